package main

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/zmq-proxy/zmq-proxy/internal/config"
)

func TestCtlUsageErrors(t *testing.T) {
	tests := []runCase{
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
	checkRuns(t, []string{"ctl"}, tests)
}

func TestAdminAddrOption(t *testing.T) {
	hermeticEnv(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	short := filepath.Join(t.TempDir(), "short")
	if err := os.WriteFile(short, []byte("hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	noLoopback := `--admin-addr: "%s" is not a loopback address, and no admin_token_file: anyone who reaches it could pause the proxy; give --admin-token-file or a loopback address`
	for _, tt := range []struct {
		in        string
		token     string
		want      string
		wantErr   string
		wantToken string
	}{
		{in: "", want: ""},
		{in: ":9470", want: "127.0.0.1:9470"},
		{in: "0.0.0.0:9470", wantErr: fmt.Sprintf(noLoopback, "0.0.0.0:9470")},
		{in: "[::]:9470", wantErr: fmt.Sprintf(noLoopback, "[::]:9470")},
		{in: "proxy.example:9470", wantErr: fmt.Sprintf(noLoopback, "proxy.example:9470")},
		{in: "0.0.0.0:9470", token: tokenFile, want: "0.0.0.0:9470", wantToken: "0123456789abcdef0123"},
		{in: "localhost:9470", want: "localhost:9470"},
		{in: "[::1]:9470", want: "[::1]:9470"},
		{in: "127.0.0.1:0", want: "127.0.0.1:0"},
		{in: "9470", wantErr: `--admin-addr: "9470" is not host:port`},
		{in: "127.0.0.1:0", token: short, wantErr: "--admin-token-file: \"" + short + "\" is not a token file: the token is 7 characters long, at least 16 wanted (openssl rand -hex 16 makes one)"},
	} {
		args := []string{"-u", "zmq://", "--admin-addr", tt.in}
		if tt.token != "" {
			args = append(args, "--admin-token-file", tt.token)
		}
		c, err := config.ResolveProxy(args)
		switch {
		case tt.wantErr != "":
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("--admin-addr %q: got error %v, want %q", tt.in, err, tt.wantErr)
			}
		case err != nil:
			t.Errorf("--admin-addr %q: %v", tt.in, err)
		case c.AdminAddr != tt.want || c.AdminToken != tt.wantToken:
			t.Errorf("--admin-addr %q: got %q token %q, want %q token %q", tt.in, c.AdminAddr, c.AdminToken, tt.want, tt.wantToken)
		}
	}
}
