package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zmq-proxy/zmq-proxy/transport/security"
)

// securityFiles writes a user file, a secret key, an allow-list with one
// key, and an empty directory, and returns their paths.
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
// A Z85 key may start with '-' ('-' is in Z85's alphabet): given as the
// next argument, it is still the flag's value.
