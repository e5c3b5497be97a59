package security

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"golang.org/x/crypto/curve25519"
)

// Key is a CURVE (Curve25519) key, public or secret.
type Key [32]byte

// String is the key in Z85, 40 characters, as libzmq and zcert write it.
func (k Key) String() string {
	s, _ := Z85Encode(k[:])
	return s
}

// ParseKey reads a key in Z85 (40 characters) or hex (64 characters).
func ParseKey(s string) (Key, error) {
	var k Key
	var b []byte
	var err error
	switch len(s) {
	case 40:
		b, err = Z85Decode(s)
	case 64:
		b, err = hex.DecodeString(s)
		if err != nil {
			err = errors.New("not hexadecimal")
		}
	default:
		return k, fmt.Errorf("%w: a key is 40 Z85 or 64 hex characters, got %d", ErrKey, len(s))
	}
	if err != nil {
		// Never the text itself: it may be a secret key.
		return k, fmt.Errorf("%w: not a key: %v", ErrKey, err)
	}
	copy(k[:], b)
	return k, nil
}

// KeyPair is a long-term CURVE key pair.
type KeyPair struct {
	Public, Secret Key
}

// GenerateKeyPair makes a fresh key pair (what zmq_curve_keypair does).
func GenerateKeyPair() (KeyPair, error) {
	var kp KeyPair
	if _, err := io.ReadFull(rand.Reader, kp.Secret[:]); err != nil {
		return kp, err
	}
	pub, err := curve25519.X25519(kp.Secret[:], curve25519.Basepoint)
	if err != nil {
		return kp, err
	}
	copy(kp.Public[:], pub)
	return kp, nil
}

// KeyPairFromSecret derives the public key of secret.
func KeyPairFromSecret(secret Key) (KeyPair, error) {
	pub, err := curve25519.X25519(secret[:], curve25519.Basepoint)
	if err != nil {
		return KeyPair{}, fmt.Errorf("%w: %v", ErrKey, err)
	}
	kp := KeyPair{Secret: secret}
	copy(kp.Public[:], pub)
	return kp, nil
}

// maxCertFile bounds what a certificate file may hold; a key file is a few
// hundred bytes.
const maxCertFile = 64 << 10

// cert is what a certificate file holds.
type cert struct {
	public, secret       Key
	hasPublic, hasSecret bool
}

// parseCert reads a certificate as libzmq's and CZMQ's zcert tools (and
// pyzmq's zmq.auth.create_certificates) write it, in ZPL:
//
//	metadata
//	curve
//	    public-key = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
//	    secret-key = "JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6"
//
// A file that holds only a bare 40-character Z85 key is read as a public
// key. Comments (#) and other properties are ignored.
func parseCert(data []byte) (cert, error) {
	var c cert
	sc := bufio.NewScanner(bytes.NewReader(data))
	lineNo := 0
	for sc.Scan() {
		lineNo++
		line := strings.TrimSpace(sc.Text())
		if len(line) == 40 && !c.hasPublic {
			// A bare key. Z85 has '#' and '=' in its alphabet, so this
			// comes before comments and properties (whose lines have
			// spaces, which Z85 has not).
			if k, err := ParseKey(line); err == nil {
				c.public, c.hasPublic = k, true
				continue
			}
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, value, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		name = strings.TrimSpace(name)
		value = strings.TrimSpace(value)
		if len(value) >= 2 && (value[0] == '"' || value[0] == '\'') && value[len(value)-1] == value[0] {
			value = value[1 : len(value)-1]
		}
		switch name {
		case "public-key":
			k, err := ParseKey(value)
			if err != nil {
				return c, fmt.Errorf("line %d: public-key: %w", lineNo, err)
			}
			c.public, c.hasPublic = k, true
		case "secret-key":
			k, err := ParseKey(value)
			if err != nil {
				return c, fmt.Errorf("line %d: secret-key: %w", lineNo, err)
			}
			c.secret, c.hasSecret = k, true
		}
	}
	if err := sc.Err(); err != nil {
		return c, err
	}
	return c, nil
}

func readCertFile(path string) (cert, error) {
	f, err := os.Open(path)
	if err != nil {
		return cert{}, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxCertFile+1))
	if err != nil {
		return cert{}, fmt.Errorf("%s: %w", path, err)
	}
	if len(data) > maxCertFile {
		return cert{}, fmt.Errorf("%w: %s: larger than %d bytes, not a key file", ErrKey, path, maxCertFile)
	}
	c, err := parseCert(data)
	if err != nil {
		return c, fmt.Errorf("%w: %s: %w", ErrKey, path, err)
	}
	return c, nil
}

// LoadSecretKey reads a secret certificate (zcert's "_secret" file) and
// returns its key pair. The public key is derived from the secret one; if
// the file also names a public key, the two must match.
func LoadSecretKey(path string) (KeyPair, error) {
	c, err := readCertFile(path)
	if err != nil {
		return KeyPair{}, err
	}
	if !c.hasSecret {
		return KeyPair{}, fmt.Errorf("%w: %s: no secret-key in the file", ErrKey, path)
	}
	kp, err := KeyPairFromSecret(c.secret)
	if err != nil {
		return kp, fmt.Errorf("%s: %w", path, err)
	}
	if c.hasPublic && c.public != kp.Public {
		return KeyPair{}, fmt.Errorf("%w: %s: public-key does not belong to secret-key", ErrKey, path)
	}
	return kp, nil
}

// LoadPublicKey reads the public key of a certificate file (public or
// secret), or of a file holding a bare Z85 key.
func LoadPublicKey(path string) (Key, error) {
	c, err := readCertFile(path)
	if err != nil {
		return Key{}, err
	}
	if c.hasPublic {
		return c.public, nil
	}
	if c.hasSecret {
		kp, err := KeyPairFromSecret(c.secret)
		return kp.Public, err
	}
	return Key{}, fmt.Errorf("%w: %s: no public-key in the file", ErrKey, path)
}

// CertText renders kp as a zcert secret certificate (withSecret) or public
// certificate, in the layout libzmq's tools read.
func CertText(kp KeyPair, withSecret bool) string {
	var b strings.Builder
	if withSecret {
		b.WriteString("#   ZeroMQ CURVE **Secret** Certificate\n#   DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions.\n\n")
	} else {
		b.WriteString("#   ZeroMQ CURVE Public Certificate\n#   Exchange securely, or use a secure mechanism to verify the contents\n#   of this file after exchange.\n\n")
	}
	b.WriteString("metadata\ncurve\n")
	fmt.Fprintf(&b, "    public-key = \"%s\"\n", kp.Public)
	if withSecret {
		fmt.Fprintf(&b, "    secret-key = \"%s\"\n", kp.Secret)
	}
	return b.String()
}

// AllowList is the set of client public keys a CURVE server accepts. It
// is read from a directory, one key per file, and can be reloaded while
// servers use it: a reload swaps the whole set at once.
type AllowList struct {
	dir  string
	keys atomic.Pointer[map[Key]string] // key -> the file it came from
	live liveSet                        // connections of admitted clients
}

// NewAllowList reads every key file in dir. A file that is not a key file
// is an error naming it. Hidden files (.name) and directories are skipped.
func NewAllowList(dir string) (*AllowList, error) {
	a := &AllowList{dir: dir}
	if err := a.Reload(); err != nil {
		return nil, err
	}
	return a, nil
}

// AllowKeys is an allow-list of the given keys, not backed by a directory
// (Reload keeps it as it is).
func AllowKeys(keys ...Key) *AllowList {
	m := make(map[Key]string, len(keys))
	for _, k := range keys {
		m[k] = ""
	}
	a := &AllowList{}
	a.keys.Store(&m)
	return a
}

// Reload reads the directory again. On error the previous set stays.
func (a *AllowList) Reload() error {
	if a.dir == "" {
		return nil
	}
	entries, err := os.ReadDir(a.dir)
	if err != nil {
		return fmt.Errorf("%w: allow-list: %w", ErrKey, err)
	}
	m := make(map[Key]string, len(entries))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") || e.IsDir() {
			continue
		}
		path := filepath.Join(a.dir, e.Name())
		k, err := LoadPublicKey(path)
		if err != nil {
			return err
		}
		m[k] = e.Name()
	}
	a.keys.Store(&m)
	return nil
}

// Allowed reports whether key is in the list.
func (a *AllowList) Allowed(key Key) bool {
	if a == nil {
		return false
	}
	m := a.keys.Load()
	if m == nil {
		return false
	}
	_, ok := (*m)[key]
	return ok
}

// Len is the number of keys in the list.
func (a *AllowList) Len() int {
	if a == nil {
		return 0
	}
	if m := a.keys.Load(); m != nil {
		return len(*m)
	}
	return 0
}

// track registers conn, the connection of a client admitted as key, until
// it is closed.
func (a *AllowList) track(conn net.Conn, key Key) (*liveConn, net.Conn) {
	return a.live.add(conn, string(key[:]), "")
}

// CloseRevoked closes the connections of clients whose key is no longer
// in the list (call it after Reload) and returns how many it closed.
func (a *AllowList) CloseRevoked() int {
	if a == nil {
		return 0
	}
	return a.live.closeIf(func(l *liveConn) bool {
		var k Key
		copy(k[:], l.who)
		return !a.Allowed(k)
	})
}

// Sessions is the number of connections of admitted clients open now.
func (a *AllowList) Sessions() int {
	if a == nil {
		return 0
	}
	return a.live.Len()
}
