package e2e

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Where the units and the configuration file put things on a host.
const (
	installedBinary = "/usr/local/bin/zmq-proxy"
	installedConfig = "/etc/zmq-proxy/zmq-proxy.conf"
)

// peersPerSocket is the number of peers a deployment is sized for: 10k
// services or nodes on each socket.
const peersPerSocket = 10000

// stopMargin is what a stop timeout leaves beyond the drain: the record's
// deletion before it, closing the sockets and the embedded etcd after it.
const stopMargin = 5 * time.Second

// unitFile is a systemd unit: each key's values, in order, by
// "Section.Key".
type unitFile map[string][]string

func readUnit(t *testing.T, path string) unitFile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	u := unitFile{}
	section := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || strings.HasSuffix(v, `\`) {
				t.Fatalf("%s: line %q: want Key=Value on one line", path, line)
			}
			u[section+"."+strings.TrimSpace(k)] = append(u[section+"."+strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return u
}

// one is the only value of key, or "" (and a test error) if it has not
// exactly one.
func (u unitFile) one(t *testing.T, name, key string) string {
	t.Helper()
	if len(u[key]) != 1 {
		t.Errorf("%s: %s has %d values %q, want one", name, key, len(u[key]), u[key])
		return ""
	}
	return u[key][0]
}

// deployFiles are the files under ../deploy whose names match pattern.
func deployFiles(t *testing.T, pattern string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "deploy", pattern))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no deploy/%s", pattern)
	}
	return files
}

// checkConfigArgs runs the binary under test with args, in which the
// installed configuration file stands for the repository's example, and
// --check-config, and returns its one line of output.
func checkConfigArgs(t *testing.T, what string, args []string) string {
	t.Helper()
	conf, err := filepath.Abs(filepath.Join("..", "deploy", "zmq-proxy.conf"))
	if err != nil {
		t.Fatal(err)
	}
	args = append([]string(nil), args...)
	for i, a := range args {
		args[i] = strings.ReplaceAll(a, installedConfig, conf)
	}
	if !slices.Contains(args, "--check-config") {
		args = append(args, "--check-config")
	}
	cmd := exec.Command(binPath, args...)
	cmd.Env = append(os.Environ(), "STATE_DIRECTORY="+t.TempDir())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Errorf("%s: zmq-proxy %s: %v\n%s", what, strings.Join(args, " "), err, stderr.String())
		return ""
	}
	out := strings.TrimSpace(stdout.String())
	t.Logf("%s: %s", what, out)
	return out
}

// The systemd units: hardened as the design asks, their command lines
// accepted by the binary (--check-config, with the example configuration
// file), and systemd-analyze verify finds nothing to say about them.
func TestSystemdUnits(t *testing.T) {
	ours(t)
	units := deployFiles(t, "*.service")
	kinds := map[string]string{} // unit -> kind, from --check-config
	metrics := map[string]string{}
	for _, path := range units {
		name := filepath.Base(path)
		u := readUnit(t, path)
		for key, want := range map[string]string{
			"Service.Type":            "notify",
			"Service.NotifyAccess":    "main",
			"Service.Restart":         "on-failure",
			"Service.KillSignal":      "SIGTERM",
			"Service.ExecReload":      "/bin/kill -HUP $MAINPID",
			"Service.NoNewPrivileges": "yes",
			"Service.ProtectSystem":   "strict",
			"Service.ProtectHome":     "yes",
			"Service.DynamicUser":     "yes",
			"Install.WantedBy":        "multi-user.target",
		} {
			if got := u.one(t, name, key); got != want {
				t.Errorf("%s: %s=%q, want %q", name, key, got, want)
			}
		}
		if u.one(t, name, "Service.StateDirectory") == "" {
			t.Errorf("%s: no StateDirectory= for the embedded etcd's data", name)
		}
		if u.one(t, name, "Service.WatchdogSec") == "" {
			t.Errorf("%s: no WatchdogSec=", name)
		}
		if n, err := strconv.Atoi(u.one(t, name, "Service.LimitNOFILE")); err != nil || n < 3*peersPerSocket+1024 {
			t.Errorf("%s: LimitNOFILE=%v (%v), want at least %d: %d peers on each of three sockets, and more",
				name, u["Service.LimitNOFILE"], err, 3*peersPerSocket+1024, peersPerSocket)
		}

		// ExecStartPre checks what ExecStart will run.
		start := strings.Fields(u.one(t, name, "Service.ExecStart"))
		pre := strings.Fields(u.one(t, name, "Service.ExecStartPre"))
		if len(start) == 0 || start[0] != installedBinary {
			t.Fatalf("%s: ExecStart=%q, want %s and its flags", name, start, installedBinary)
		}
		wantPre := append([]string{start[0], "--check-config"}, start[1:]...)
		if strings.Join(pre, " ") != strings.Join(wantPre, " ") {
			t.Errorf("%s: ExecStartPre=%q, want %q", name, pre, wantPre)
		}
		out := checkConfigArgs(t, name, start[1:])
		kv := parseLogLine(strings.TrimPrefix(out, "zmq-proxy: configuration OK: "))
		kinds[name], metrics[name] = kv["kind"], kv["metrics_addr"]
		// systemd's SIGKILL must not cut the drain short: the stop
		// timeout leaves the drain and a margin for closing (the
		// embedded etcd included).
		if d := kv["drain_timeout"]; d != "" {
			drain, err := time.ParseDuration(d)
			stop, err2 := time.ParseDuration(u.one(t, name, "Service.TimeoutStopSec"))
			if err != nil || err2 != nil || stop < drain+stopMargin {
				t.Errorf("%s: TimeoutStopSec=%v (%v) with drain_timeout=%s (%v), want at least the drain and %v", name, u["Service.TimeoutStopSec"], err2, d, err, stopMargin)
			}
		}
	}
	if kinds["zmq-proxy.service"] != "double-router" || kinds["zmq-proxy-local.service"] != "local" {
		t.Errorf("kinds of the units' proxies: got %v, want zmq-proxy.service double-router, zmq-proxy-local.service local", kinds)
	}
	if m := metrics["zmq-proxy.service"]; m == "" || m == metrics["zmq-proxy-local.service"] {
		t.Errorf("metrics addresses of the units: %v, want two different ones (the two may share a node)", metrics)
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze verify left out: no systemd-analyze (apt-get install systemd; .ci/test.sh does)")
	}
	// verify wants the binary that ExecStart names to exist: the one
	// under test stands in for it.
	dir := t.TempDir()
	var copies []string
	for _, path := range units {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		to := filepath.Join(dir, filepath.Base(path))
		if err := os.WriteFile(to, bytes.ReplaceAll(b, []byte(installedBinary), []byte(binPath)), 0o644); err != nil {
			t.Fatal(err)
		}
		copies = append(copies, to)
	}
	cmd := exec.Command(analyze, append([]string{"verify", "--man=no"}, copies...)...)
	out, err := cmd.CombinedOutput()
	// verify exits 0 after warnings such as an unknown key: any output is
	// a failure.
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	} else {
		t.Logf("systemd-analyze verify: %d units, nothing to say", len(copies))
	}
}
