package security

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestZ85(t *testing.T) {
	// RFC 32's test vector.
	raw := []byte{0x86, 0x4F, 0xD2, 0x6F, 0xB5, 0x59, 0xF7, 0x5B}
	s, err := Z85Encode(raw)
	if err != nil || s != "HelloWorld" {
		t.Fatalf("Z85Encode = %q, %v; want HelloWorld", s, err)
	}
	b, err := Z85Decode("HelloWorld")
	if err != nil || !bytes.Equal(b, raw) {
		t.Fatalf("Z85Decode = %x, %v; want %x", b, err, raw)
	}
	bad := []struct{ name, in string }{
		{"length not a multiple of 5", "Hell"},
		{"character outside the alphabet", "Hello World"[:5] + "\"orld"},
		{"group overflows 32 bits", "#####"},
	}
	for _, tc := range bad {
		if _, err := Z85Decode(tc.in); !errors.Is(err, ErrKey) {
			t.Errorf("%s: Z85Decode(%q) error %v, want ErrKey", tc.name, tc.in, err)
		}
	}
	if _, err := Z85Encode([]byte{1, 2, 3}); !errors.Is(err, ErrKey) {
		t.Errorf("Z85Encode of 3 bytes: error %v, want ErrKey", err)
	}
}

// Keys that libzmq makes (zmq_curve_keypair) read back as the same key
// pair, and our public key derivation agrees with libzmq's.
func TestKeysAgreeWithLibzmq(t *testing.T) {
	dir := t.TempDir()
	script := `import sys, zmq, zmq.auth
pub, sec = zmq.auth.create_certificates(sys.argv[1], "peer")
print(zmq.curve_public(open(sec).read().split('secret-key = "')[1][:40].encode()).decode())`
	out, err := exec.Command(python, "-c", script, dir).CombinedOutput()
	if err != nil {
		t.Fatalf("python3-zmq: %v\n%s", err, out)
	}
	libzmqPublic := strings.TrimSpace(string(out))
	kp, err := LoadSecretKey(filepath.Join(dir, "peer.key_secret"))
	if err != nil {
		t.Fatal(err)
	}
	if kp.Public.String() != libzmqPublic {
		t.Errorf("derived public key %s, libzmq says %s", kp.Public, libzmqPublic)
	}
	pub, err := LoadPublicKey(filepath.Join(dir, "peer.key"))
	if err != nil || pub != kp.Public {
		t.Errorf("public certificate: %s, %v; want %s", pub, err, kp.Public)
	}
}

func TestCertTextRoundTrip(t *testing.T) {
	kp := mustKeyPair(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "c_secret")
	os.WriteFile(path, []byte(CertText(kp, true)), 0o600)
	got, err := LoadSecretKey(path)
	if err != nil || got != kp {
		t.Fatalf("LoadSecretKey = %v, %v; want the pair written", got, err)
	}
}

func TestKeyFileErrors(t *testing.T) {
	kp, other := mustKeyPair(t), mustKeyPair(t)
	tests := []struct {
		name, text string
		secret     bool // read with LoadSecretKey, else LoadPublicKey
	}{
		{"no key at all", "metadata\ncurve\n", false},
		{"no secret key", CertText(kp, false), true},
		{"bad public key", "curve\n    public-key = \"tooshort\"\n", false},
		{"bad secret key", "curve\n    secret-key = \"" + strings.Repeat("~", 40) + "\"\n", true},
		{"public key of another pair", "curve\n    public-key = \"" + other.Public.String() + "\"\n    secret-key = \"" + kp.Secret.String() + "\"\n", true},
		{"too large", strings.Repeat("#\n", maxCertFile), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "k")
			os.WriteFile(path, []byte(tc.text), 0o600)
			var err error
			if tc.secret {
				_, err = LoadSecretKey(path)
			} else {
				_, err = LoadPublicKey(path)
			}
			if !errors.Is(err, ErrKey) || !strings.Contains(err.Error(), path) {
				t.Errorf("got error %v, want ErrKey naming %s", err, path)
			}
		})
	}
}

func TestAllowListReload(t *testing.T) {
	a, b := mustKeyPair(t), mustKeyPair(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.key"), []byte(CertText(a, false)), 0o644)
	os.WriteFile(filepath.Join(dir, ".hidden"), []byte("not a key"), 0o644)
	os.WriteFile(filepath.Join(dir, "bare"), []byte(b.Public.String()+"\n"), 0o644)
	l, err := NewAllowList(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !l.Allowed(a.Public) || !l.Allowed(b.Public) || l.Len() != 2 {
		t.Fatalf("allow-list has %d keys, want a and b", l.Len())
	}
	os.Remove(filepath.Join(dir, "bare"))
	if err := l.Reload(); err != nil {
		t.Fatal(err)
	}
	if l.Allowed(b.Public) || l.Len() != 1 {
		t.Fatalf("after removing b: %d keys, b allowed %v; want 1, false", l.Len(), l.Allowed(b.Public))
	}
	// A broken file keeps the previous list.
	os.WriteFile(filepath.Join(dir, "broken"), []byte("public-key = \"xx\"\n"), 0o644)
	if err := l.Reload(); !errors.Is(err, ErrKey) {
		t.Fatalf("reload with a broken file: %v, want ErrKey", err)
	}
	if !l.Allowed(a.Public) {
		t.Fatal("a failed reload dropped the previous list")
	}
	if _, err := NewAllowList(filepath.Join(dir, "missing")); !errors.Is(err, ErrKey) {
		t.Errorf("missing directory: %v, want ErrKey", err)
	}
	var none *AllowList
	if none.Allowed(a.Public) || none.Len() != 0 {
		t.Error("a nil allow-list allows someone")
	}
}

func TestParseKeyHex(t *testing.T) {
	kp := mustKeyPair(t)
	k, err := ParseKey(strings.Repeat("00", 31) + "ff")
	if err != nil || k[31] != 0xff {
		t.Fatalf("hex key: %x, %v", k, err)
	}
	if _, err := ParseKey(kp.Public.String()[:39]); !errors.Is(err, ErrKey) {
		t.Errorf("39 characters: %v, want ErrKey", err)
	}
}

// Z85 has '#' and '=' in its alphabet: a bare key holding them is still
// a key, not a comment or a property.
func TestBareKeyWithZ85Punctuation(t *testing.T) {
	for _, s := range []string{"0#" + strings.Repeat("0", 38), strings.Repeat("0", 20) + "=" + strings.Repeat("0", 19)} {
		c, err := parseCert([]byte(s + "\n"))
		if err != nil || !c.hasPublic || c.public.String() != s {
			t.Errorf("bare key %q: got %v, %v", s, c.public, err)
		}
	}
}

// No error about a key file says any part of the key: a secret key with
// one bad character, or a group that overflows, is reported by position.
func TestKeyErrorsDoNotEchoTheKey(t *testing.T) {
	kp := mustKeyPair(t)
	good := kp.Secret.String()
	overflow := "%%%%%" + good[5:] // "%%%%%" is worth more than 2^32-1
	for _, bad := range []string{good[:17] + "~" + good[18:], good[:39] + "\"", overflow, strings.Repeat("g", 63) + "z"} {
		path := filepath.Join(t.TempDir(), "k")
		os.WriteFile(path, []byte("curve\n    secret-key = \""+bad+"\"\n"), 0o600)
		_, err := LoadSecretKey(path)
		if err == nil {
			t.Fatalf("%q: loaded", bad)
		}
		for i := 0; i+6 <= len(bad); i++ {
			if strings.Contains(err.Error(), bad[i:i+6]) {
				t.Fatalf("error %q holds %q, 6 characters of the key", err, bad[i:i+6])
			}
		}
	}
}
