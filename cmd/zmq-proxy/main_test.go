package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/zmq-proxy/zmq-proxy/internal/config"
	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
	"github.com/zmq-proxy/zmq-proxy/registry"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// hermeticEnv empties the environment variables that make defaults or
// override the file, so that a test does not depend on who runs it. HOME
// is a temporary directory: the state directory defaults to one in it.
func hermeticEnv(t *testing.T) (home string) {
	t.Helper()
	home = t.TempDir()
	for _, v := range []string{"STATE_DIRECTORY", "XDG_STATE_HOME", "ZMQ_PROXY_ETCD_PASSWORD", "GOMAXPROCS", "NODE_NAME"} {
		t.Setenv(v, "")
	}
	t.Setenv("HOME", home)
	return home
}

func TestRun(t *testing.T) {
	hermeticEnv(t)
	tests := []runCase{
		{name: "help", args: []string{"-h"}, wantCode: 0, wantStdout: "-f, --frontend-port PORT"},
		{name: "bad flag", args: []string{"-f", "abc"}, wantCode: 2, wantStderr: "zmq-proxy: -f: \"abc\" is not a port number\n"},
		{name: "unknown flag", args: []string{"-x"}, wantCode: 2, wantStderr: "zmq-proxy: flag provided but not defined: -x\n"},
		{name: "bad log file", args: []string{"-l", "/nonexistent/x.log"}, wantCode: 2, wantStderr: "zmq-proxy: -l /nonexistent/x.log: open /nonexistent/x.log: no such file or directory\n"},
		{name: "local publisher without a source", args: []string{"-lp", "-u", "zmq://"}, wantCode: 2, wantStderr: "zmq-proxy: invalid configuration: a local publisher proxy needs subscribe_on or a registry to find the central publishers\n"},
	}
	checkRuns(t, nil, tests)
}

func TestLogFile(t *testing.T) {
	hermeticEnv(t)
	path := filepath.Join(t.TempDir(), "proxy.log")
	c, err := config.ResolveProxy([]string{"-l", path, "-d"})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // appended, not truncated
		logger, closeLog, err := config.NewLogger(c, nil)
		if err != nil {
			t.Fatal(err)
		}
		c.Log(logger)
		if err := closeLog(); err != nil {
			t.Fatal(err)
		}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Count(string(data), `msg=option name=frontend_port value=0 source=default`), 2; got != want {
		t.Errorf("log file has the frontend_port line %d times, want %d:\n%s", got, want, data)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o644&^umask(t) {
		t.Errorf("log file mode: got %v (%v), want %v", fi.Mode().Perm(), err, os.FileMode(0o644&^umask(t)))
	}
}

// umask is the process's file mode creation mask, found by creating a file.
func umask(t *testing.T) os.FileMode {
	t.Helper()
	path := filepath.Join(t.TempDir(), "umask")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o777)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return 0o777 &^ fi.Mode().Perm()
}

// TestBinary builds zmq-proxy and runs it: a bad flag exits 2 with one line
// on stderr; SIGTERM stops a running proxy with exit code 0; list gives up
// on an etcd that does not answer with exit code 1, and SIGINT ends
// list -w with exit code 0.
func TestBinary(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command:", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "zmq-proxy")
	if out, err := exec.CommandContext(ctx, goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	hermeticEnv(t) // after go build: it needs the real $HOME for its caches

	noEtcd := testutil.FreeAddr(t)
	listTimeout, err := time.ParseDuration(config.DefaultListTimeout)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantLine string // the last line of stderr; only one line when wantCode is 2
	}{
		{name: "bad flag", args: []string{"--frontend-port", "abc"}, wantCode: 2, wantLine: `zmq-proxy: --frontend-port: "abc" is not a port number`},
		{name: "unknown flag", args: []string{"--nope"}, wantCode: 2, wantLine: `zmq-proxy: flag provided but not defined: -nope`},
		{name: "positional", args: []string{"run"}, wantCode: 2, wantLine: `zmq-proxy: unexpected argument "run"`},
		{name: "local publisher without a source", args: []string{"-lp", "-u", "zmq://"}, wantCode: 2, wantLine: `zmq-proxy: invalid configuration: a local publisher proxy needs subscribe_on or a registry to find the central publishers`},
		{name: "list bad flag", args: []string{"list", "--etcd-prefix", "x"}, wantCode: 2, wantLine: `zmq-proxy list: --etcd-prefix: "x" is not a key prefix that starts and ends with "/"`},
		{name: "list without etcd", args: []string{"list", "--etcd-addr", noEtcd}, wantCode: 1, wantLine: `zmq-proxy list: no etcd at ` + noEtcd + `: nothing answered within 5s; start zmq-proxy first (it runs one there), or give -u`},
		// The same failure, the same exit status, whatever the command.
		{name: "call without etcd", args: []string{"call", "demo", "echo", "--etcd-addr", noEtcd}, wantCode: 1, wantLine: `zmq-proxy call: no etcd at ` + noEtcd + `: nothing answered within 5s; start zmq-proxy first (it runs one there), or give -u`},
		{name: "ctl without a proxy", args: []string{"ctl", "stats", "--admin-addr", noEtcd}, wantCode: 1},
		{name: "call with arguments not by name", args: []string{"call", "demo", "echo", "[1,2]", "--etcd-addr", noEtcd}, wantCode: 2, wantLine: `zmq-proxy call: JSON_ARGS [1,2] is not a JSON object: a method's arguments go by name, as in '{"x": 1}'`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			cmd := exec.CommandContext(ctx, bin, tt.args...)
			cmd.Stderr = &stderr
			start := time.Now()
			err := cmd.Run()
			var exit *exec.ExitError
			if !errors.As(err, &exit) {
				t.Fatalf("run: got %v, want an exit status", err)
			}
			if got := exit.ExitCode(); got != tt.wantCode {
				t.Errorf("exit code: got %d, want %d", got, tt.wantCode)
			}
			if tt.wantCode == 1 && time.Since(start) > listTimeout+3*time.Second {
				t.Errorf("exit after %s, want it within the default --timeout of %s", time.Since(start), listTimeout)
			}
			lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
			if tt.wantCode == 2 && len(lines) != 1 {
				t.Errorf("stderr: got %d lines %q, want one", len(lines), lines)
			}
			if got := lines[len(lines)-1]; tt.wantLine != "" && got != tt.wantLine {
				t.Errorf("stderr: got %q, want %q", got, tt.wantLine)
			}
		})
	}

	t.Run("SIGTERM", func(t *testing.T) {
		// No registry: this test is about signals, not etcd.
		cmd := exec.CommandContext(ctx, bin, "-H", "127.0.0.1", "-u", "zmq://")
		stderr, err := cmd.StderrPipe()
		if err != nil {
			t.Fatal(err)
		}
		lines := startLines(t, cmd, stderr)

		waitForLine(t, lines, `msg="proxy started"`)
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		waitForLine(t, lines, `msg="shutting down" signal="terminated signal received"`)
		for range lines {
		}
		if err := cmd.Wait(); err != nil {
			t.Errorf("after SIGTERM: got %v, want exit code 0", err)
		}
	})

	t.Run("list -w SIGINT", func(t *testing.T) {
		e := testutil.Embedded(t)
		register(t, e.Client(t), registry.DefaultPrefix, recA)
		cmd := exec.CommandContext(ctx, bin, "list", "-w", "-u", etcdURL(e), "--timeout", slowEtcd)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		lines := startLines(t, cmd, stdout)

		waitForLine(t, lines, "PUBLISHER")
		waitForLine(t, lines, recA.ID)
		if err := cmd.Process.Signal(os.Interrupt); err != nil {
			t.Fatal(err)
		}
		for range lines {
		}
		if err := cmd.Wait(); err != nil {
			t.Errorf("after SIGINT: got %v, want exit code 0 (stderr %q)", err, stderr.String())
		}
	})

}

// startLines starts cmd and returns the lines of out, one of its pipes, as
// they come; the channel closes when the process closes out. When the test
// ends the process is killed (in case the test failed first), the lines
// drained and the process waited for.
func startLines(t *testing.T, cmd *exec.Cmd, out io.Reader) <-chan string {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() { // ends when the process closes out; drained in the cleanup
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		for range lines {
		}
		_ = cmd.Wait()
	})
	return lines
}

// waitForLine reads lines until one contains want, or fails the test after
// ten seconds.
func waitForLine(t *testing.T, lines <-chan string, want string) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	var seen []string
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("stderr closed without a line containing %q; got %q", want, seen)
			}
			if strings.Contains(line, want) {
				return
			}
			seen = append(seen, line)
		case <-timeout:
			t.Fatalf("no line containing %q within 10s; got %q", want, seen)
		}
	}
}
