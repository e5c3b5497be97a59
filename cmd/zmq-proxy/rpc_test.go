package main

import (
	"bytes"
	"strings"
	"testing"
)

// The client commands: positional arguments anywhere among the flags, a
// one-line error and exit status 2 for anything wrong before a message is
// sent, -h on stdout with exit status 0.
func TestClientCommandArgs(t *testing.T) {
	hermeticEnv(t)
	noEtcd := "127.0.0.1:1" // nothing listens on port 1
	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string // a substring of the one line on stderr
		wantOut  string // a substring of stdout
	}{
		{"call help", []string{"call", "-h"}, 0, "", "Usage: zmq-proxy call TOPIC[.SERVER] METHOD [JSON_ARGS]"},
		{"bench help", []string{"bench", "-h"}, 0, "", "--outstanding N"},
		{"call too few", []string{"call", "demo"}, 2, "zmq-proxy call: 1 arguments, want TOPIC[.SERVER] METHOD [JSON_ARGS]", ""},
		{"cast too many", []string{"cast", "a", "b", "{}", "x"}, 2, "zmq-proxy cast: 4 arguments", ""},
		{"echo-server none", []string{"echo-server"}, 2, "zmq-proxy echo-server: 0 arguments, want TOPIC [SERVER]", ""},
		{"bad flag value", []string{"call", "demo", "echo", "--timeout", "soon"}, 2, `--timeout: "soon" is`, ""},
		{"flag after args", []string{"call", "demo", "echo", "--etcd-addr", noEtcd, "--timeout", "200ms"}, 1, "no etcd at 127.0.0.1:1", ""},
		{"unknown flag", []string{"notify", "demo.info", "ev", "--nope"}, 2, "flag provided but not defined: -nope", ""},
		{"bench mode", []string{"bench", "ping", "--etcd-addr", noEtcd}, 2, `zmq-proxy bench: "ping" is not call, cast or fanout`, ""},
		{"bad json before etcd", []string{"cast", "demo", "m", "{x", "--etcd-addr", noEtcd}, 2, `JSON_ARGS "{x" is not JSON`, ""},
		{"proxy takes no args", []string{"stray"}, 2, `unexpected argument "stray"`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(tc.args, &stdout, &stderr)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d; stderr %q", code, tc.wantCode, stderr.String())
			}
			if tc.wantErr != "" {
				if !strings.Contains(stderr.String(), tc.wantErr) || strings.Count(strings.TrimSpace(stderr.String()), "\n") != 0 {
					t.Fatalf("stderr %q, want one line containing %q", stderr.String(), tc.wantErr)
				}
			}
			if !strings.Contains(stdout.String(), tc.wantOut) {
				t.Fatalf("stdout %q, want it to contain %q", stdout.String(), tc.wantOut)
			}
		})
	}
}

// jsonArg names the argument it cannot read.
func TestJSONArg(t *testing.T) {
	if _, err := jsonArg("JSON_ARGS", "{x"); err == nil || !strings.Contains(err.Error(), `JSON_ARGS "{x" is not JSON`) {
		t.Fatalf("jsonArg: got %v", err)
	}
	v, err := jsonArg("JSON_ARGS", "")
	if err != nil || v == nil {
		t.Fatalf("empty: got %v, %v", v, err)
	}
}
