package main

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zmq-proxy/zmq-proxy/internal/config"
	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
	"github.com/zmq-proxy/zmq-proxy/registry"
	"github.com/zmq-proxy/zmq-proxy/rpc"
	"github.com/zmq-proxy/zmq-proxy/zmqproxytest"
)

// -h names every command of the binary, one line each, and the exit
// status table.
func TestUsageListsEveryCommand(t *testing.T) {
	var stdout bytes.Buffer
	if code := run([]string{"-h"}, &stdout, &bytes.Buffer{}); code != 0 {
		t.Fatalf("-h: exit %d", code)
	}
	lines := strings.Split(stdout.String(), "\n")
	for _, name := range slices.Sorted(maps.Keys(subcommands)) {
		n := 0
		for _, l := range lines {
			if f := strings.Fields(l); len(f) > 2 && f[0] == name && strings.HasPrefix(l, "  "+name+" ") {
				n++
			}
		}
		if n != 1 {
			t.Errorf("-h: %d lines for the command %s, want 1:\n%s", n, name, stdout.String())
		}
	}
	if len(config.CommandHelp) != len(subcommands) {
		t.Errorf("-h describes %d commands, the binary has %d", len(config.CommandHelp), len(subcommands))
	}
	for _, want := range []string{"Exit status, every command:", "  2  bad flag, argument or configuration", "  3  call: the server's handler raised"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("-h: want %q in\n%s", want, stdout.String())
		}
	}
}

// list and list --json name a server's target the same way, as call
// takes it: "demo.s1".
func TestListTargetNames(t *testing.T) {
	hermeticEnv(t)
	sys := zmqproxytest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	srv, err := rpc.NewServer(ctx, rpc.ServerConfig{Registry: sys.Registry(), Topic: "demo", Server: "s1", Host: "h",
		Handlers: map[string]rpc.Handler{"m": func(context.Context, *rpc.Message) (any, error) { return nil, nil }}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	var text, js bytes.Buffer
	if code := run([]string{"list", "-u", sys.URL(), "--timeout", slowEtcd}, &text, &bytes.Buffer{}); code != 0 {
		t.Fatalf("list: exit %d", code)
	}
	if code := run([]string{"list", "--json", "-u", sys.URL(), "--timeout", slowEtcd}, &js, &bytes.Buffer{}); code != 0 {
		t.Fatalf("list --json: exit %d", code)
	}
	var inText []string
	for _, l := range normalized(text.String()) {
		if f := strings.Fields(l); len(f) == 4 && strings.HasPrefix(f[0], "demo") {
			inText = append(inText, f[0])
		}
	}
	var inJSON []string
	for l := range strings.Lines(js.String()) {
		var tg registry.Target
		if json.Unmarshal([]byte(l), &tg) == nil && tg.Target != "" {
			inJSON = append(inJSON, tg.Target)
		}
	}
	slices.Sort(inText)
	slices.Sort(inJSON)
	want := []string{"demo", "demo.s1"}
	if !slices.Equal(inText, want) || !slices.Equal(inJSON, want) {
		t.Errorf("targets: list %q, list --json %q, want both %q\n%s\n%s", inText, inJSON, want, text.String(), js.String())
	}
}

// A call's --timeout bounds the reply, not the registry: with etcd up and
// a server that takes its time, --timeout 1ms says that no reply came, and
// exits 1, as every failure at run time does; a remote error exits 3; a
// target nobody serves exits 1 and says what to do.
func TestCallTimeoutAndExitStatus(t *testing.T) {
	hermeticEnv(t)
	sys := zmqproxytest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitBound)
	defer cancel()
	srv, err := rpc.NewServer(ctx, rpc.ServerConfig{Registry: sys.Registry(), Topic: "demo", Host: "h",
		Handlers: map[string]rpc.Handler{
			"slow": func(ctx context.Context, _ *rpc.Message) (any, error) {
				select {
				case <-ctx.Done():
				case <-time.After(2 * time.Second):
				}
				return nil, nil
			},
			"fail": func(context.Context, *rpc.Message) (any, error) {
				return nil, &rpc.RemoteError{Class: "ValueError", Module: "builtins", Message: "no"}
			},
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string // stderr, the whole line
	}{
		// The message says what did not come, the reply or, within 1ms, the
		// proxy's connection; never that etcd is missing.
		{"reply timeout", []string{"call", "demo", "slow", "--timeout", "1ms"}, 1,
			"zmq-proxy call: timed out*, within 1ms (--timeout): a busy server or a slow network needs a longer --timeout"},
		// etcd answers after 300ms, later than --timeout: the registry is
		// waited for all the same, and the timeout is the reply's.
		{"slow etcd, short timeout", []string{"call", "demo", "slow", "--timeout", "100ms", "-u", "zmq+etcd://" + testutil.RelayAfter(t, strings.TrimPrefix(sys.Endpoints()[0], "http://"), 300*time.Millisecond, nil) + "/"}, 1,
			"zmq-proxy call: timed out*, within 100ms (--timeout): a busy server or a slow network needs a longer --timeout"},
		{"remote error", []string{"call", "demo", "fail"}, 3, "zmq-proxy call: remote ValueError: no"},
		{"no server", []string{"call", "nobody", "slow"}, 1,
			"zmq-proxy call: no server for the target: nobody: start a server of the topic; zmq-proxy list shows the registered ones"},
		{"arguments not an object", []string{"call", "demo", "slow", "[1,2]"}, 2,
			`zmq-proxy call: JSON_ARGS [1,2] is not a JSON object: a method's arguments go by name, as in '{"x": 1}'`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			args := tc.args
			if !slices.Contains(args, "-u") {
				args = append(args, "-u", sys.URL())
			}
			code := run(args, &bytes.Buffer{}, &stderr)
			line := strings.TrimSuffix(stderr.String(), "\n")
			prefix, suffix, wild := strings.Cut(tc.wantErr, "*")
			match := line == tc.wantErr ||
				wild && strings.HasPrefix(line, prefix) && strings.HasSuffix(line, suffix) && !strings.Contains(line, "etcd") && !strings.Contains(line, "\n")
			if code != tc.wantCode || !match {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr.String(), tc.wantCode, tc.wantErr)
			}
		})
	}
}

// echo-server's --node: the flag, else $NODE_NAME (the downward API's
// spec.nodeName in a pod), else empty (the server's --name).
func TestNodeOption(t *testing.T) {
	hermeticEnv(t)
	for _, tc := range []struct {
		name, env string
		args      []string
		want      string
	}{
		{"none", "", nil, ""},
		{"environment", "node-a", nil, "node-a"},
		{"flag over environment", "node-a", []string{"--node", "node-b"}, "node-b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("NODE_NAME", tc.env)
			c, err := config.Resolve(config.CmdRPC, append([]string{"demo"}, tc.args...))
			if err != nil {
				t.Fatal(err)
			}
			if c.Node != tc.want {
				t.Errorf("Node: got %q, want %q", c.Node, tc.want)
			}
		})
	}
}
