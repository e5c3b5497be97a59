package main

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

// securityFiles writes a user file, a secret key, an allow-list with one
// key, and an empty directory, and returns their paths.
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
			c, err := resolveConfig(tc.args)
			if err != nil {
				t.Fatal(err)
			}
			pc := c.proxyConfig(nil)
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
			_, err := resolveConfig(append(append([]string{}, base...), tc.args...))
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

func TestKeygen(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"keygen"}, &out, &errOut); code != 0 {
		t.Fatalf("keygen exit %d: %s", code, errOut.String())
	}
	path := filepath.Join(t.TempDir(), "k")
	os.WriteFile(path, out.Bytes(), 0o600)
	kp, err := security.LoadSecretKey(path)
	if err != nil {
		t.Fatalf("keygen's output does not read back as a secret key: %v\n%s", err, out.String())
	}
	name := filepath.Join(t.TempDir(), "node1")
	out.Reset()
	if code := run([]string{"keygen", "-o", name}, &out, &errOut); code != 0 {
		t.Fatalf("keygen -o exit %d: %s", code, errOut.String())
	}
	sec, err1 := security.LoadSecretKey(name + ".key_secret")
	pub, err2 := security.LoadPublicKey(name + ".key")
	if err1 != nil || err2 != nil || sec.Public != pub || sec == kp {
		t.Fatalf("keygen -o: secret %v (%v), public %v (%v)", sec.Public, err1, pub, err2)
	}
	if st, _ := os.Stat(name + ".key_secret"); st.Mode().Perm() != 0o600 {
		t.Errorf("secret key file mode %v, want 0600", st.Mode().Perm())
	}
	if code := run([]string{"keygen", "extra"}, &out, &errOut); code != 2 {
		t.Errorf("keygen with an argument: exit %d, want 2", code)
	}
}

// keygen -o never writes over a file, nor through a link, unless
// --force; with --force it replaces links and files with new 0600 files
// and leaves a link's target alone.
func TestKeygenNeverOverwrites(t *testing.T) {
	dir := t.TempDir()
	name := filepath.Join(dir, "node")
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("precious\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, name+".key_secret"); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"keygen", "-o", name}, &out, &errOut); code != 1 {
		t.Fatalf("keygen -o over a link: exit %d, want 1", code)
	}
	if want := name + ".key_secret exists: give --force to replace it"; !strings.Contains(errOut.String(), want) {
		t.Errorf("stderr %q, want it to say %q", errOut.String(), want)
	}
	if _, err := os.Lstat(name + ".key"); err == nil {
		t.Error("keygen -o wrote NAME.key although NAME.key_secret exists")
	}
	errOut.Reset()
	if code := run([]string{"keygen", "--force", "-o", name}, &out, &errOut); code != 0 {
		t.Fatalf("keygen --force -o: exit %d: %s", code, errOut.String())
	}
	if b, _ := os.ReadFile(target); string(b) != "precious\n" {
		t.Fatalf("the link's target was written: %q", b)
	}
	st, err := os.Lstat(name + ".key_secret")
	if err != nil || st.Mode()&os.ModeSymlink != 0 || st.Mode().Perm() != 0o600 {
		t.Fatalf("NAME.key_secret after --force: %v %v, want a regular file of mode 0600", st.Mode(), err)
	}
	if _, err := security.LoadSecretKey(name + ".key_secret"); err != nil {
		t.Fatal(err)
	}
	// An existing public key file alone also stops it.
	other := filepath.Join(dir, "other")
	os.WriteFile(other+".key", []byte("x"), 0o644)
	if code := run([]string{"keygen", "-o", other}, &out, &errOut); code != 1 {
		t.Fatalf("keygen -o over NAME.key: exit %d, want 1", code)
	}
	if _, err := os.Lstat(other + ".key_secret"); err == nil {
		t.Error("keygen -o wrote NAME.key_secret although NAME.key exists")
	}
}

// SIGHUP's reload: a changed file is taken, a broken one is reported and
// the previous list stays.
func TestReloadSecurity(t *testing.T) {
	hermeticEnv(t)
	f := writeSecurityFiles(t)
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	c, err := resolveConfig([]string{"-u", "zmq://", "--curve-secret-key", f.secret, "--curve-allow", f.empty})
	if err != nil {
		t.Fatal(err)
	}
	c.logSecurity(logger)
	if !strings.Contains(logs.String(), "the CURVE allow-list is empty") {
		t.Errorf("no warning about the empty allow-list at start:\n%s", logs.String())
	}
	kp, _ := security.GenerateKeyPair()
	os.WriteFile(filepath.Join(f.empty, "a.key"), []byte(security.CertText(kp, false)), 0o600)
	c.reloadSecurity(logger)
	if c.Sec.curveAllow.Len() != 1 || !strings.Contains(logs.String(), "allowed_keys=1") {
		t.Errorf("after adding a key: %d keys; log:\n%s", c.Sec.curveAllow.Len(), logs.String())
	}
	os.WriteFile(filepath.Join(f.empty, "broken"), []byte("public-key = \"x\"\n"), 0o600)
	c.reloadSecurity(logger)
	if c.Sec.curveAllow.Len() != 1 || !strings.Contains(logs.String(), "the previous list stays") {
		t.Errorf("after a broken file: %d keys; log:\n%s", c.Sec.curveAllow.Len(), logs.String())
	}

	c, err = resolveConfig([]string{"-u", "zmq://", "--plain-users", f.users})
	if err != nil {
		t.Fatal(err)
	}
	h, _ := bcrypt.GenerateFromPassword([]byte("pw2"), bcrypt.MinCost)
	os.WriteFile(f.users, []byte("alice:"+string(h)+"\nbob:"+string(h)+"\n"), 0o600)
	c.reloadSecurity(logger)
	if c.Sec.plainUsers.Len() != 2 || !c.Sec.plainUsers.Check([]byte("bob"), []byte("pw2")) {
		t.Errorf("after adding bob: %d users", c.Sec.plainUsers.Len())
	}
	os.WriteFile(f.users, []byte("bob\n"), 0o600)
	c.reloadSecurity(logger)
	if c.Sec.plainUsers.Len() != 2 || !strings.Contains(logs.String(), "reload of the PLAIN users failed") {
		t.Errorf("after a broken file: %d users; log:\n%s", c.Sec.plainUsers.Len(), logs.String())
	}
}

// A Z85 key may start with '-' ('-' is in Z85's alphabet): given as the
// next argument, it is still the flag's value.
func TestServerKeyStartingWithDash(t *testing.T) {
	hermeticEnv(t)
	f := writeSecurityFiles(t)
	var kp security.KeyPair
	for kp.Public.String()[0] != '-' {
		kp, _ = security.GenerateKeyPair()
	}
	c, err := resolveConfig([]string{"-lp", "-u", "zmq+etcd://127.0.0.1:1/",
		"--curve-server-key", kp.Public.String(), "--curve-client-key", f.secret})
	if err != nil {
		t.Fatal(err)
	}
	if c.Sec.curveServer != kp.Public {
		t.Fatalf("server key %s, want %s", c.Sec.curveServer, kp.Public)
	}
}

// createNew refuses what is already there, a file or a link (even one
// pointing nowhere), so that a file made between keygen's check and its
// write is never written through; what it creates has the mode asked,
// whatever the umask allows above it.
func TestCreateNewRefusesWhatExists(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "existing")
	if err := os.WriteFile(existing, []byte("theirs"), 0o644); err != nil {
		t.Fatal(err)
	}
	dangling := filepath.Join(dir, "dangling")
	if err := os.Symlink(filepath.Join(dir, "nowhere"), dangling); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{existing, dangling} {
		if f, err := createNew(p, 0o600); err == nil {
			f.Close()
			t.Errorf("createNew(%s): no error, want it refused", filepath.Base(p))
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "nowhere")); err == nil {
		t.Error("createNew wrote through the dangling link")
	}
	if b, _ := os.ReadFile(existing); string(b) != "theirs" {
		t.Errorf("the existing file now holds %q", b)
	}
	f, err := createNew(filepath.Join(dir, "new"), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if st, err := os.Stat(filepath.Join(dir, "new")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("new file: %v, mode %v; want 0600", err, st.Mode().Perm())
	}
}
