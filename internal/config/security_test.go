package config

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/zmq-proxy/zmq-proxy/transport/security"
)

type secFiles struct{ users, secret, allow, empty, bad, serverPub string }

func writeSecurityFiles(t *testing.T) secFiles {
	t.Helper()
	dir := t.TempDir()
	h, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	f := secFiles{
		users:     filepath.Join(dir, "users"),
		secret:    filepath.Join(dir, "server.key_secret"),
		allow:     filepath.Join(dir, "allow"),
		empty:     filepath.Join(dir, "empty"),
		bad:       filepath.Join(dir, "bad"),
		serverPub: filepath.Join(dir, "server.key"),
	}
	kp, _ := security.GenerateKeyPair()
	client, _ := security.GenerateKeyPair()
	os.WriteFile(f.users, []byte("alice:"+string(h)+"\n"), 0o600)
	os.WriteFile(f.secret, []byte(security.CertText(kp, true)), 0o600)
	os.WriteFile(f.serverPub, []byte(security.CertText(kp, false)), 0o600)
	os.Mkdir(f.allow, 0o700)
	os.Mkdir(f.empty, 0o700)
	os.WriteFile(filepath.Join(f.allow, "client.key"), []byte(security.CertText(client, false)), 0o600)
	os.WriteFile(f.bad, []byte("alice:not-a-hash\n"), 0o600)
	return f
}

func TestSecurityOptions(t *testing.T) {
	hermeticEnv(t)
	f := writeSecurityFiles(t)
	base := []string{"-u", "zmq://"}
	lp := []string{"-lp", "-u", "zmq+etcd://127.0.0.1:1/"}
	ok := []struct {
		name       string
		args       []string
		wantServer string // mechanism name, "" = none
		wantSub    string
	}{
		{"none", base, "", ""},
		{"plain", append(base, "--plain-users", f.users), "PLAIN", ""},
		{"curve", append(base, "--curve-secret-key", f.secret, "--curve-allow", f.allow), "CURVE", ""},
		{"curve, empty allow-list", append(base, "--curve-secret-key", f.secret, "--curve-allow", f.empty), "CURVE", ""},
		{"local proxy, curve client with a key file", append(lp, "--curve-server-key", f.serverPub, "--curve-client-key", f.secret), "", "CURVE"},
		{"local proxy, plain client", append(lp, "--plain-user", "alice", "--plain-password", "pw"), "", "PLAIN"},
	}
	for _, tc := range ok {
		t.Run(tc.name, func(t *testing.T) {
			c, err := ResolveProxy(tc.args)
			if err != nil {
				t.Fatal(err)
			}
			pc := c.ProxyConfig(nil)
			if got := mechName(pc.Security); got != tc.wantServer {
				t.Errorf("server mechanism %q, want %q", got, tc.wantServer)
			}
			if got := mechName(pc.SubscriberSecurity); got != tc.wantSub {
				t.Errorf("subscriber mechanism %q, want %q", got, tc.wantSub)
			}
		})
	}
	bad := []struct {
		name, wantErr string
		args          []string
	}{
		{"user file with a bad hash", `--plain-users: "` + f.bad + `" is not a user file (user:bcrypt-hash per line): plain users: ` + f.bad + `: line 1: user "alice": not a bcrypt hash`, []string{"--plain-users", f.bad}},
		{"missing user file", `--plain-users: "/nonexistent" is not a user file`, []string{"--plain-users", "/nonexistent"}},
		{"secret key file without a secret", `--curve-secret-key: "` + f.serverPub + `" is not a CURVE secret key file`, []string{"--curve-secret-key", f.serverPub, "--curve-allow", f.allow}},
		{"allow-list that is not a directory", `--curve-allow: "` + f.users + `" is not a directory of CURVE public keys`, []string{"--curve-secret-key", f.secret, "--curve-allow", f.users}},
		{"secret key without allow-list", `--curve-secret-key: "` + f.secret + `" is not usable without curve_allow: give --curve-allow or curve_allow in the file`, []string{"--curve-secret-key", f.secret}},
		{"allow-list without secret key", `--curve-allow: "` + f.allow + `" is not usable without curve_secret_key`, []string{"--curve-allow", f.allow}},
		{"plain and curve", `--plain-users: "` + f.users + `" is not usable with curve_secret_key`, []string{"--plain-users", f.users, "--curve-secret-key", f.secret, "--curve-allow", f.allow}},
		{"client key on a central proxy", `--curve-server-key: "` + f.serverPub + `" is only for a local publisher proxy (-lp)`, []string{"--curve-server-key", f.serverPub, "--curve-client-key", f.secret}},
		{"bad server key", `--curve-server-key: "abc" is neither a Z85 public key nor a key file`, []string{"--curve-server-key", "abc"}},
		{"password without user", `--plain-password: "(hidden)" is not usable without plain_user`, []string{"--plain-password", "x"}},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ResolveProxy(append(append([]string{}, base...), tc.args...))
			if err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) {
				t.Errorf("got error %v,\nwant one starting %q", err, tc.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q is more than one line", err)
			}
		})
	}
}

func mechName(m security.Mechanism) string {
	if m == nil {
		return ""
	}
	return m.Name()
}

func TestReloadSecurity(t *testing.T) {
	hermeticEnv(t)
	f := writeSecurityFiles(t)
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	c, err := ResolveProxy([]string{"-u", "zmq://", "--curve-secret-key", f.secret, "--curve-allow", f.empty})
	if err != nil {
		t.Fatal(err)
	}
	c.LogSecurity(logger)
	if !strings.Contains(logs.String(), "the CURVE allow-list is empty") {
		t.Errorf("no warning about the empty allow-list at start:\n%s", logs.String())
	}
	kp, _ := security.GenerateKeyPair()
	os.WriteFile(filepath.Join(f.empty, "a.key"), []byte(security.CertText(kp, false)), 0o600)
	c.ReloadSecurity(logger)
	if c.Sec.curveAllow.Len() != 1 || !strings.Contains(logs.String(), "allowed_keys=1") {
		t.Errorf("after adding a key: %d keys; log:\n%s", c.Sec.curveAllow.Len(), logs.String())
	}
	os.WriteFile(filepath.Join(f.empty, "broken"), []byte("public-key = \"x\"\n"), 0o600)
	c.ReloadSecurity(logger)
	if c.Sec.curveAllow.Len() != 1 || !strings.Contains(logs.String(), "the previous list stays") {
		t.Errorf("after a broken file: %d keys; log:\n%s", c.Sec.curveAllow.Len(), logs.String())
	}

	c, err = ResolveProxy([]string{"-u", "zmq://", "--plain-users", f.users})
	if err != nil {
		t.Fatal(err)
	}
	h, _ := bcrypt.GenerateFromPassword([]byte("pw2"), bcrypt.MinCost)
	os.WriteFile(f.users, []byte("alice:"+string(h)+"\nbob:"+string(h)+"\n"), 0o600)
	c.ReloadSecurity(logger)
	if c.Sec.plainUsers.Len() != 2 || !c.Sec.plainUsers.Check([]byte("bob"), []byte("pw2")) {
		t.Errorf("after adding bob: %d users", c.Sec.plainUsers.Len())
	}
	os.WriteFile(f.users, []byte("bob\n"), 0o600)
	c.ReloadSecurity(logger)
	if c.Sec.plainUsers.Len() != 2 || !strings.Contains(logs.String(), "reload of the PLAIN users failed") {
		t.Errorf("after a broken file: %d users; log:\n%s", c.Sec.plainUsers.Len(), logs.String())
	}
}

func TestServerKeyStartingWithDash(t *testing.T) {
	hermeticEnv(t)
	f := writeSecurityFiles(t)
	var kp security.KeyPair
	for kp.Public.String()[0] != '-' {
		kp, _ = security.GenerateKeyPair()
	}
	c, err := ResolveProxy([]string{"-lp", "-u", "zmq+etcd://127.0.0.1:1/",
		"--curve-server-key", kp.Public.String(), "--curve-client-key", f.secret})
	if err != nil {
		t.Fatal(err)
	}
	if c.Sec.curveServer != kp.Public {
		t.Fatalf("server key %s, want %s", c.Sec.curveServer, kp.Public)
	}
}
