package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestCtlUsageErrors(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStderr string
		wantStdout string // a part of stdout
	}{
		{name: "help", args: []string{"-h"}, wantStdout: "Usage: zmq-proxy ctl pause|resume|stats --admin-addr HOST:PORT"},
		{name: "no command", args: []string{"--admin", "127.0.0.1:1"}, wantCode: 2,
			wantStderr: "zmq-proxy ctl: no command: give pause, resume or stats\n"},
		{name: "unknown command", args: []string{"stop", "--admin", "127.0.0.1:1"}, wantCode: 2,
			wantStderr: "zmq-proxy ctl: unknown command \"stop\": give pause, resume or stats\n"},
		{name: "no admin", args: []string{"pause"}, wantCode: 2,
			wantStderr: "zmq-proxy ctl: --admin-addr is required: the HOST:PORT the proxy was started with as its --admin-addr\n"},
		{name: "bad admin", args: []string{"pause", "--admin", "localhost:http"}, wantCode: 2,
			wantStderr: "zmq-proxy ctl: --admin-addr: \"localhost:http\" is not host:port with a port in 1..65535\n"},
		{name: "bad admin-addr", args: []string{"pause", "--admin-addr", "localhost:http"}, wantCode: 2,
			wantStderr: "zmq-proxy ctl: --admin-addr: \"localhost:http\" is not host:port with a port in 1..65535\n"},
		{name: "two commands", args: []string{"pause", "--admin", "127.0.0.1:1", "resume"}, wantCode: 2,
			wantStderr: "zmq-proxy ctl: unexpected argument \"resume\"\n"},
		{name: "bad timeout", args: []string{"stats", "--admin", "127.0.0.1:1", "--timeout", "0s"}, wantCode: 2,
			wantStderr: "zmq-proxy ctl: --timeout: 0s is not a positive duration\n"},
		{name: "unknown flag", args: []string{"stats", "--nope"}, wantCode: 2,
			wantStderr: "zmq-proxy ctl: flag provided but not defined: -nope\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if got := run(append([]string{"ctl"}, tt.args...), &stdout, &stderr); got != tt.wantCode {
				t.Errorf("exit code: got %d, want %d (stderr %q)", got, tt.wantCode, stderr.String())
			}
			if got := stderr.String(); got != tt.wantStderr {
				t.Errorf("stderr: got %q, want %q", got, tt.wantStderr)
			}
			if got := stdout.String(); !strings.Contains(got, tt.wantStdout) {
				t.Errorf("stdout: got %q, want it to contain %q", got, tt.wantStdout)
			}
		})
	}
}

func TestAdminAddrOption(t *testing.T) {
	hermeticEnv(t)
	for _, tt := range []struct{ in, want, wantErr string }{
		{in: "", want: ""},
		{in: ":9470", want: "127.0.0.1:9470"},
		{in: "0.0.0.0:9470", want: "0.0.0.0:9470"},
		{in: "127.0.0.1:0", want: "127.0.0.1:0"},
		{in: "9470", wantErr: `--admin-addr: "9470" is not host:port`},
	} {
		c, err := resolveConfig([]string{"-u", "zmq://", "--admin-addr", tt.in})
		switch {
		case tt.wantErr != "":
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("--admin-addr %q: got error %v, want %q", tt.in, err, tt.wantErr)
			}
		case err != nil:
			t.Errorf("--admin-addr %q: %v", tt.in, err)
		case c.AdminAddr != tt.want:
			t.Errorf("--admin-addr %q: got %q, want %q", tt.in, c.AdminAddr, tt.want)
		}
	}
}
