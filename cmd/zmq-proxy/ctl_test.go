package main

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
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
		c, err := resolveConfig(args)
		switch {
		case tt.wantErr != "":
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("--admin-addr %q: got error %v, want %q", tt.in, err, tt.wantErr)
			}
		case err != nil:
			t.Errorf("--admin-addr %q: %v", tt.in, err)
		case c.AdminAddr != tt.want || c.adminToken != tt.wantToken:
			t.Errorf("--admin-addr %q: got %q token %q, want %q token %q", tt.in, c.AdminAddr, c.adminToken, tt.want, tt.wantToken)
		}
	}
}

// adminGuard: what a web page or a stranger could send is refused, with
// its own status; ctl's requests pass.
func TestAdminGuard(t *testing.T) {
	const token = "0123456789abcdef0123"
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	json := map[string]string{"Content-Type": "application/json"}
	for _, tt := range []struct {
		name    string
		token   string
		method  string
		host    string
		headers map[string]string
		want    int
	}{
		{"ctl's POST, no token", "", "POST", "127.0.0.1:9470", json, 200},
		{"GET /stats, no token", "", "GET", "127.0.0.1:9470", nil, 200},
		{"simple POST text/plain", "", "POST", "127.0.0.1:9470", map[string]string{"Content-Type": "text/plain"}, 415},
		{"form POST", "", "POST", "127.0.0.1:9470", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 415},
		{"POST without Content-Type", "", "POST", "127.0.0.1:9470", nil, 415},
		{"cross-site fetch", "", "POST", "127.0.0.1:9470", map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"}, 403},
		{"same-site fetch", "", "GET", "127.0.0.1:9470", map[string]string{"Sec-Fetch-Site": "same-site"}, 403},
		{"same-origin fetch", "", "GET", "127.0.0.1:9470", map[string]string{"Sec-Fetch-Site": "same-origin"}, 200},
		{"other Origin", "", "GET", "127.0.0.1:9470", map[string]string{"Origin": "http://evil.example"}, 403},
		{"DNS rebinding: Host is a name", "", "GET", "evil.example:9470", nil, 403},
		{"with token, none sent", token, "POST", "10.0.0.1:9470", json, 401},
		{"with token, wrong one", token, "POST", "10.0.0.1:9470", map[string]string{"Content-Type": "application/json", "Authorization": "Bearer 0123456789abcdef0124"}, 401},
		{"with token, right one", token, "POST", "10.0.0.1:9470", map[string]string{"Content-Type": "application/json", "Authorization": "Bearer " + token}, 200},
		{"with token, right one, text/plain", token, "POST", "10.0.0.1:9470", map[string]string{"Content-Type": "text/plain", "Authorization": "Bearer " + token}, 415},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, "http://"+tt.host+"/pause", nil)
			for k, v := range tt.headers {
				r.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			adminGuard(tt.token, ok).ServeHTTP(w, r)
			if w.Code != tt.want {
				t.Fatalf("got %d (%s), want %d", w.Code, strings.TrimSpace(w.Body.String()), tt.want)
			}
		})
	}
}
