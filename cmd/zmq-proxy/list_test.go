package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/zmq-proxy/zmq-proxy/internal/listing"
	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
	"github.com/zmq-proxy/zmq-proxy/registry"
)

// Records the list tests register.
var (
	recA = registry.Record{
		ID: "host-a/1", Kind: "double-router", Host: "host-a",
		Frontend: "tcp://10.0.0.1:5000", Backend: "tcp://10.0.0.1:5001", Publisher: "tcp://10.0.0.1:5002",
		Started: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), Generation: 1,
	}
	recB = registry.Record{
		ID: "host-b/2", Kind: "single-router", Host: "host-b",
		Frontend: "tcp://10.0.0.2:5000", Publisher: "tcp://10.0.0.2:5002",
		Started: time.Date(2025, 1, 2, 4, 4, 6, 0, time.FixedZone("CET", 3600)), Generation: 2,
	}
	recOther = registry.Record{ID: "host-c/3", Kind: "local", Host: "host-c", Publisher: "tcp://10.0.0.3:5002"}
)

// slowEtcd is the --timeout of the tests where etcd answers: it bounds
// failures only, and an in-process etcd under -race on a busy machine (bcrypt
// for authentication) can take seconds.
const slowEtcd = "60s"

// waitBound bounds the waits for output: a bound on failure only.
const waitBound = 30 * time.Second

// etcdURL is the -u of an embedded etcd.
func etcdURL(e *testutil.EmbeddedEtcd) string {
	return "zmq+etcd://" + etcdHostPort(e) + "/"
}

func etcdHostPort(e *testutil.EmbeddedEtcd) string {
	return strings.TrimPrefix(e.Endpoints()[0], "http://")
}

// register puts recs under prefix, as a proxy does: JSON under
// registry.Key, bound to one new lease, which it returns.
func register(t *testing.T, cli *clientv3.Client, prefix string, recs ...registry.Record) clientv3.LeaseID {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitBound)
	defer cancel()
	lease, err := cli.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if _, err := cli.Put(ctx, registry.Key(prefix, r.ID), recordJSON(t, r), clientv3.WithLease(lease.ID)); err != nil {
			t.Fatal(err)
		}
	}
	return lease.ID
}

func recordJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// wantTable checks a table: the header, then one row per record, the
// columns aligned.
func wantTable(t *testing.T, out string, recs ...registry.Record) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	want := [][]string{{"ID", "KIND", "HOST", "FRONTEND", "BACKEND", "PUBLISHER", "STARTED"}}
	for _, r := range recs {
		want = append(want, []string{r.ID, r.Kind, r.Host, dash(r.Frontend), dash(r.Backend), dash(r.Publisher), listing.FormatStarted(r.Started)})
	}
	if len(lines) != len(want) {
		t.Fatalf("table: got %d lines, want %d:\n%s", len(lines), len(want), out)
	}
	for i, line := range lines {
		if got := strings.Fields(line); strings.Join(got, " ") != strings.Join(want[i], " ") {
			t.Errorf("table line %d: got %q, want the fields %q", i, line, want[i])
		}
		if i > 0 && strings.Index(line, want[i][1]) != strings.Index(lines[0], "KIND") {
			t.Errorf("table: the KIND column is not aligned:\n%s", out)
		}
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func TestList(t *testing.T) {
	hermeticEnv(t)
	e := testutil.Embedded(t)
	cli := e.Client(t)
	register(t, cli, registry.DefaultPrefix, recB, recA)
	register(t, cli, "/other/", recOther)
	ini := filepath.Join(t.TempDir(), "proxy.ini")
	if err := os.WriteFile(ini, []byte("[zmq_proxy_opts]\nurl = "+etcdURL(e)+"\netcd_prefix = /other/\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		args      []string
		wantTable []registry.Record // the table on stdout
		wantJSON  []registry.Record // or one JSON record per line
	}{
		{name: "table", args: []string{"-u", etcdURL(e)}, wantTable: []registry.Record{recA, recB}},
		{name: "json", args: []string{"--url", etcdURL(e), "--json"}, wantJSON: []registry.Record{recA, recB}},
		{name: "no URL: the etcd on --etcd-addr", args: []string{"--etcd-addr", etcdHostPort(e)}, wantTable: []registry.Record{recA, recB}},
		{name: "prefix", args: []string{"-u", etcdURL(e), "--etcd-prefix", "/other/"}, wantTable: []registry.Record{recOther}},
		{name: "config file", args: []string{"-c", ini}, wantTable: []registry.Record{recOther}},
		{name: "empty prefix: the header alone", args: []string{"-u", etcdURL(e), "--etcd-prefix", "/none/"}, wantTable: []registry.Record{}},
		{name: "empty prefix, json: nothing", args: []string{"-u", etcdURL(e), "--etcd-prefix", "/none/", "--json"}, wantJSON: []registry.Record{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append([]string{"list", "--timeout", slowEtcd}, tt.args...)
			if code := run(args, &stdout, &stderr); code != 0 {
				t.Fatalf("exit code: got %d, want 0 (stderr %q)", code, stderr.String())
			}
			if stderr.Len() != 0 {
				t.Errorf("stderr: got %q, want nothing", stderr.String())
			}
			if tt.wantTable != nil {
				wantTable(t, stdout.String(), tt.wantTable...)
				return
			}
			var want strings.Builder
			for _, r := range tt.wantJSON {
				want.WriteString(recordJSON(t, r) + "\n")
			}
			if got := stdout.String(); got != want.String() {
				t.Errorf("stdout: got\n%s\nwant\n%s", got, want.String())
			}
		})
	}
}

// startList runs runList in a goroutine until the test cancels ctx through
// stop, which returns the exit code; the test's cleanup stops it too.
func startList(t *testing.T, args ...string) (stdout, stderr *testutil.SyncBuffer, stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	stdout, stderr = &testutil.SyncBuffer{}, &testutil.SyncBuffer{}
	done := make(chan int, 1)
	go func() { done <- runList(ctx, args, stdout, stderr) }()
	var once sync.Once
	code := -1
	stop = func() int {
		once.Do(func() {
			cancel()
			select {
			case code = <-done:
			case <-time.After(waitBound):
				t.Errorf("list did not return within %s of its context's end", waitBound)
			}
		})
		return code
	}
	t.Cleanup(func() { stop() })
	return stdout, stderr, stop
}

// stamp is the time list -w puts on a change line, at its start in text
// and as "time" in JSON.
var stamp = regexp.MustCompile(`(^|\n|"time":")(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)`)

// stampless is out with each change's time replaced by TIME.
func stampless(out string) string { return stamp.ReplaceAllString(out, "${1}TIME") }

// checkStamps fails the test unless out has n times, each between from
// and now (to the millisecond list prints).
func checkStamps(t *testing.T, out string, from time.Time, n int) {
	t.Helper()
	ms := stamp.FindAllStringSubmatch(out, -1)
	if len(ms) != n {
		t.Errorf("%d change times in\n%s\nwant %d", len(ms), out, n)
	}
	to := time.Now()
	for _, m := range ms {
		at, err := time.Parse(listing.TimeLayout, m[2])
		if err != nil || at.Before(from.Truncate(time.Millisecond)) || at.After(to) {
			t.Errorf("change time %s (%v): want one between %s and %s", m[2], err, from.UTC().Format(listing.TimeLayout), to.UTC().Format(listing.TimeLayout))
		}
	}
}

// waitLines waits until out holds want, line for line (each change's time
// as TIME), and fails the test after waitBound.
func waitLines(t *testing.T, out *testutil.SyncBuffer, want []string) {
	t.Helper()
	wantText := strings.Join(want, "\n") + "\n"
	testutil.CheckFor(t, waitBound, func() error {
		if got := out.String(); stampless(got) != wantText {
			return fmt.Errorf("output: got\n%s\nwant\n%s", got, wantText)
		}
		return nil
	})
}

// normalized is lines with each line's runs of blanks made one blank.
func normalized(out string) []string {
	var lines []string
	for line := range strings.Lines(out) {
		lines = append(lines, strings.Join(strings.Fields(line), " "))
	}
	return lines
}

// waitNormalized is waitLines on the table's lines with blanks collapsed.
func waitNormalized(t *testing.T, out *testutil.SyncBuffer, want []string) {
	t.Helper()
	wantText := strings.Join(want, "\n")
	testutil.CheckFor(t, waitBound, func() error {
		if got := out.String(); strings.Join(normalized(stampless(got)), "\n") != wantText {
			return fmt.Errorf("output: got\n%s\nwant (blanks collapsed)\n%s", got, wantText)
		}
		return nil
	})
}

func TestListWatch(t *testing.T) {
	hermeticEnv(t)
	e := testutil.Embedded(t)
	cli := e.Client(t)
	leaseA := register(t, cli, registry.DefaultPrefix, recA)

	start := time.Now()
	stdout, stderr, stop := startList(t, "-w", "-u", etcdURL(e), "--timeout", slowEtcd)
	header := "ID KIND HOST FRONTEND BACKEND PUBLISHER STARTED"
	rowA := "host-a/1 double-router host-a tcp://10.0.0.1:5000 tcp://10.0.0.1:5001 tcp://10.0.0.1:5002 2025-01-02T03:04:05Z"
	waitNormalized(t, stdout, []string{header, rowA})

	register(t, cli, registry.DefaultPrefix, recB)
	waitNormalized(t, stdout, []string{header, rowA, "TIME + host-b/2 single-router tcp://10.0.0.2:5000 - tcp://10.0.0.2:5002"})

	if _, err := cli.Revoke(t.Context(), leaseA); err != nil {
		t.Fatal(err)
	}
	waitNormalized(t, stdout, []string{
		header, rowA,
		"TIME + host-b/2 single-router tcp://10.0.0.2:5000 - tcp://10.0.0.2:5002",
		"TIME - host-a/1",
	})
	checkStamps(t, stdout.String(), start, 2)

	if code := stop(); code != 0 {
		t.Errorf("exit code after the context's end: got %d, want 0", code)
	}
	if stderr.String() != "" {
		t.Errorf("stderr: got %q, want nothing", stderr.String())
	}
}

func TestListWatchJSON(t *testing.T) {
	hermeticEnv(t)
	e := testutil.Embedded(t)
	cli := e.Client(t)
	leaseA := register(t, cli, registry.DefaultPrefix, recA)

	start := time.Now()
	stdout, stderr, stop := startList(t, "--watch", "--json", "-u", etcdURL(e), "--timeout", slowEtcd)
	event := func(typ string, r registry.Record) string {
		return recordJSON(t, listing.JSONEvent{Time: "TIME", Event: typ, Record: r})
	}
	want := []string{event("put", recA)}
	waitLines(t, stdout, want)

	register(t, cli, registry.DefaultPrefix, recB)
	want = append(want, event("put", recB))
	waitLines(t, stdout, want)

	if _, err := cli.Revoke(t.Context(), leaseA); err != nil {
		t.Fatal(err)
	}
	want = append(want, event("delete", recA))
	waitLines(t, stdout, want)
	checkStamps(t, stdout.String(), start, 3)

	if code := stop(); code != 0 {
		t.Errorf("exit code after the context's end: got %d, want 0", code)
	}
	if stderr.String() != "" {
		t.Errorf("stderr: got %q, want nothing", stderr.String())
	}
	for _, line := range want {
		if !strings.HasPrefix(line, `{"time":"TIME","event":"`) {
			t.Errorf("event line %q does not start with the time and the event", line)
		}
	}
}

// TestListNoEtcd: where nothing answers, list gives up within --timeout
// with one line, and exit code 1.
func TestListNoEtcd(t *testing.T) {
	hermeticEnv(t)
	addr := testutil.FreeAddr(t)
	tests := []struct {
		name       string
		args       []string
		wantStderr string
	}{
		{
			name:       "no URL",
			args:       []string{"--etcd-addr", addr, "--timeout", "300ms"},
			wantStderr: "zmq-proxy list: no etcd at " + addr + ": nothing answered within 300ms; start zmq-proxy first (it runs one there), or give -u\n",
		},
		{
			name:       "URL",
			args:       []string{"-u", "zmq+etcd://" + addr + "/", "--timeout", "300ms"},
			wantStderr: "zmq-proxy list: no etcd at " + addr + " (url from -u): nothing answered within 300ms\n",
		},
		{
			// With a user, the client authenticates while it dials.
			name:       "user",
			args:       []string{"--etcd-addr", addr, "--timeout", "300ms", "--etcd-user", "u", "--etcd-password", "p"},
			wantStderr: "zmq-proxy list: no etcd at " + addr + ": nothing answered within 300ms; start zmq-proxy first (it runs one there), or give -u\n",
		},
		{
			name:       "watch",
			args:       []string{"-w", "--json", "-u", "zmq+etcd://" + addr + "/", "--timeout", "300ms"},
			wantStderr: "zmq-proxy list: no etcd at " + addr + " (url from -u): nothing answered within 300ms\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			start := time.Now()
			code := run(append([]string{"list"}, tt.args...), &stdout, &stderr)
			if elapsed := time.Since(start); elapsed > 300*time.Millisecond+3*time.Second {
				t.Errorf("list took %s with --timeout 300ms", elapsed)
			}
			if code != 1 {
				t.Errorf("exit code: got %d, want 1", code)
			}
			if got := stderr.String(); got != tt.wantStderr {
				t.Errorf("stderr: got %q, want %q", got, tt.wantStderr)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout: got %q, want nothing", stdout.String())
			}
		})
	}
}

func TestListUsageAndErrors(t *testing.T) {
	hermeticEnv(t)
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []runCase{
		{name: "help", args: []string{"list", "-h"}, wantCode: 0, wantStdout: "Usage: zmq-proxy list [options]"},
		{name: "help long", args: []string{"list", "--help"}, wantCode: 0, wantStdout: "-w, --watch"},
		{name: "proxy help names list", args: []string{"-h"}, wantCode: 0, wantStdout: "\n  list         print the proxies"},
		{name: "zmq URL", args: []string{"list", "-u", "zmq://"}, wantCode: 2, wantStderr: "zmq-proxy list: -u: \"zmq://\" is not a registry to list: zmq:// means none\n"},
		{name: "proxy flag", args: []string{"list", "-f", "1"}, wantCode: 2, wantStderr: "zmq-proxy list: flag provided but not defined: -f\n"},
		{name: "positional", args: []string{"list", "all"}, wantCode: 2, wantStderr: "zmq-proxy list: unexpected argument \"all\"\n"},
		{name: "bad prefix", args: []string{"list", "--etcd-prefix", "p"}, wantCode: 2, wantStderr: "zmq-proxy list: --etcd-prefix: \"p\" is not a key prefix that starts and ends with \"/\"\n"},
		{name: "nonexistent CA", args: []string{"list", "--etcd-cacert", "/nonexistent/ca.pem"}, wantCode: 2, wantStderr: "zmq-proxy list: --etcd-cacert: \"/nonexistent/ca.pem\" is not a readable file: no such file or directory\n"},
		{name: "CA not PEM", args: []string{"list", "--etcd-cacert", notPEM}, wantCode: 2, wantStderr: "zmq-proxy list: etcd CA certificate " + notPEM + ": no PEM certificate in it\n"},
		{name: "list after a flag is an argument", args: []string{"-d", "list"}, wantCode: 2, wantStderr: "zmq-proxy: unexpected argument \"list\"\n"},
	}
	checkRuns(t, nil, tests)
}

// TestListAuth: list authenticates with --etcd-user and the password from
// the environment, and says so in one line when etcd refuses.
func TestListAuth(t *testing.T) {
	hermeticEnv(t)
	e := testutil.Embedded(t)
	cli := e.Client(t)
	register(t, cli, registry.DefaultPrefix, recA)
	testutil.EnableEtcdAuth(t, cli, "rootpw")

	tests := []struct {
		name       string
		args       []string
		env        string // $ZMQ_PROXY_ETCD_PASSWORD
		wantCode   int
		wantStderr string // a part of stderr; "" = none at all
	}{
		{name: "password from the environment", args: []string{"--etcd-user", "root"}, env: "rootpw", wantCode: 0},
		{name: "password flag", args: []string{"--etcd-user", "root", "--etcd-password", "rootpw"}, wantCode: 0},
		{name: "wrong password", args: []string{"--etcd-user", "root"}, env: "nope", wantCode: 1, wantStderr: "zmq-proxy list: etcd at " + etcdHostPort(e) + ": "},
		{name: "no user", wantCode: 1, wantStderr: "zmq-proxy list: etcd at " + etcdHostPort(e) + ": "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("ZMQ_PROXY_ETCD_PASSWORD", tt.env)
			var stdout, stderr bytes.Buffer
			args := append([]string{"list", "-u", etcdURL(e), "--timeout", slowEtcd}, tt.args...)
			if got := run(args, &stdout, &stderr); got != tt.wantCode {
				t.Errorf("exit code: got %d, want %d (stderr %q)", got, tt.wantCode, stderr.String())
			}
			got := stderr.String()
			switch {
			case tt.wantStderr == "" && got != "":
				t.Errorf("stderr: got %q, want nothing", got)
			case !strings.Contains(got, tt.wantStderr):
				t.Errorf("stderr: got %q, want it to contain %q", got, tt.wantStderr)
			case strings.Count(got, "\n") > 1:
				t.Errorf("stderr: got %q, want one line", got)
			}
			if tt.wantCode == 0 {
				wantTable(t, stdout.String(), recA)
			}
		})
	}
}

// TestListTargetsUnlisted: a user who may read the proxies but not the
// targets gets the proxies' table and, within --timeout, a one-line error
// that names the targets, instead of a list that never ends.
func TestListTargetsUnlisted(t *testing.T) {
	hermeticEnv(t)
	e := testutil.Embedded(t)
	cli := e.Client(t)
	register(t, cli, registry.DefaultPrefix, recA)
	testutil.AddEtcdUser(t, cli, "ops", "opspw", registry.DefaultPrefix+"proxies/")
	testutil.EnableEtcdAuth(t, cli, "rootpw")
	t.Setenv("ZMQ_PROXY_ETCD_PASSWORD", "opspw")
	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := run([]string{"list", "-u", etcdURL(e), "--etcd-user", "ops", "--timeout", "2s"}, &stdout, &stderr)
	took := time.Since(start)
	// The watcher's warning (once) says why; the last line what it meant.
	lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
	want := "zmq-proxy list: the proxies are listed, but etcd at " + etcdHostPort(e) + " gave no listing of the servers' targets (/zmq-proxy/targets/) within 2s"
	if code != 1 || len(lines) != 2 || !strings.Contains(lines[0], "level=WARN") || !strings.Contains(lines[0], "permission denied") || lines[1] != want {
		t.Errorf("exit code %d, stderr %q; want 1, a warning with etcd's refusal, and %q", code, stderr.String(), want)
	}
	if took < 2*time.Second {
		t.Errorf("ended after %v, before the timeout of 2s", took)
	}
	wantTable(t, stdout.String(), recA)
}
