package security

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
)

func hash(t testing.TB, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func testUsers(t testing.TB) *PlainUsers {
	t.Helper()
	u, err := PlainUserList(map[string]string{"alice": hash(t, "secret")})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// A libzmq PLAIN client with the right password is served byte for byte;
// with a wrong password, or as an unknown user, it is refused, counted,
// and nothing it sent is taken.
func TestInteropPlainLibzmqClient(t *testing.T) {
	tests := []struct {
		name, user, password string
		ok                   bool
	}{
		{"right password", "alice", "secret", true},
		{"wrong password", "alice", "guess", false},
		{"unknown user", "mallory", "secret", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := startEchoServer(t, PlainServer(testUsers(t)))
			if tc.ok {
				py := startPy(t, "client", "--endpoint", s.endpoint(), "--user", tc.user, "--password", tc.password, "--count", "6")
				res := py.line(t, "RESULT ")
				py.finish(t)
				s.mu.Lock()
				got, users := s.received, s.users
				s.mu.Unlock()
				checkSent(t, res, got)
				if len(users) != 1 || users[0] != "alice" {
					t.Errorf("users %q, want [alice]", users)
				}
				return
			}
			py := startPy(t, "client", "--attempt", "--endpoint", s.endpoint(), "--user", tc.user, "--password", tc.password)
			testutil.CheckFor(t, wait, func() error {
				if c := s.counts(); c.refused < 1 {
					return fmt.Errorf("counts %+v, want refused >= 1", c)
				}
				return nil
			})
			py.finish(t)
			if c := s.counts(); c.received != 0 || c.ok != 0 {
				t.Errorf("refused client: %d handshakes completed, %d messages taken; want 0, 0", c.ok, c.received)
			}
		})
	}
}

// Our PLAIN client against libzmq's PLAIN server (with a ZAP handler):
// the right password is served, a wrong one is ErrRefused.
func TestInteropGoPlainClientLibzmqServer(t *testing.T) {
	py := startPy(t, "server", "--users", "bob:pw1")
	ep := py.line(t, "ENDPOINT ")
	good, _ := PlainClient("bob", "pw1")
	sess := dialHandshake(t, ep, good, "DEALER", "go-plain")
	if err := writeMsg(sess.Conn, []byte("hi"), []byte{0, 1}); err != nil {
		t.Fatal(err)
	}
	got, _, err := (&frameReader{r: sess.Conn}).readMsg()
	if err != nil || fmt.Sprint(got) != fmt.Sprint([][]byte{[]byte("hi"), {0, 1}}) {
		t.Fatalf("echo %q, %v", got, err)
	}
	bad, _ := PlainClient("bob", "nope")
	conn := dialConn(t, ep)
	if _, err := Handshake(conn, bad, "DEALER", nil, 0); !errors.Is(err, ErrRefused) {
		t.Fatalf("wrong password: %v, want ErrRefused", err)
	}
}

func TestPlainUsersFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "users")
	os.WriteFile(path, []byte("# users\n\nalice:"+hash(t, "a")+"\n"), 0o600)
	u, err := LoadPlainUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	if !u.Check([]byte("alice"), []byte("a")) || u.Check([]byte("alice"), []byte("b")) || u.Check([]byte("bob"), []byte("a")) {
		t.Fatal("Check disagrees with the file")
	}
	for _, bad := range []string{"alice\n", ":hash\n", "alice:plaintext\n"} {
		os.WriteFile(path, []byte(bad), 0o600)
		if err := u.Reload(); err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("file %q: error %v, want one naming line 1", bad, err)
		}
	}
	if u.Len() != 1 || !u.Check([]byte("alice"), []byte("a")) {
		t.Error("a failed reload changed the list")
	}
	if _, err := PlainClient(strings.Repeat("u", 256), ""); !errors.Is(err, ErrKey) {
		t.Errorf("256-byte user: %v, want ErrKey", err)
	}
}

func TestPlainGoToGo(t *testing.T) {
	cli, _ := PlainClient("alice", "secret")
	srv, c := handshakePair(t, PlainServer(testUsers(t)), cli, "PUB", "SUB")
	if srv.err != nil || c.err != nil {
		t.Fatalf("server %v, client %v", srv.err, c.err)
	}
	if srv.s.Peer[PropSocketType] != "SUB" || c.s.Peer[PropSocketType] != "PUB" {
		t.Errorf("peer types %q / %q", srv.s.Peer, c.s.Peer)
	}
}

// An unknown user is checked against a hash of the list's highest cost,
// so that it takes as long to refuse as a wrong password.
func TestPlainUnknownUserCostsTheSame(t *testing.T) {
	h5, err := bcrypt.GenerateFromPassword([]byte("x"), bcrypt.MinCost+1)
	if err != nil {
		t.Fatal(err)
	}
	u, err := PlainUserList(map[string]string{"low": hash(t, "y"), "high": string(h5)})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := bcrypt.Cost(u.users.Load().dummy); err != nil || c != bcrypt.MinCost+1 {
		t.Fatalf("dummy hash cost %d (%v), want %d", c, err, bcrypt.MinCost+1)
	}
	if u.Check([]byte("nobody"), []byte("zmq-proxy: no such user")) {
		t.Fatal("an unknown user with the dummy's password was accepted")
	}
}

// holdPasswordWorkers takes every password-check worker, so that a HELLO
// finds the server busy, until the test ends or release is called
// (release may be called more than once).
func holdPasswordWorkers(t *testing.T) (release func()) {
	t.Helper()
	var held []string
	var once sync.Once
	release = func() {
		once.Do(func() {
			for _, src := range held {
				passwordChecks.release(src)
			}
		})
	}
	t.Cleanup(release)
	for range bcryptWorkers {
		src, err := passwordChecks.acquire(nil)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, src)
	}
	return release
}

// While every password-check worker is taken, a HELLO waits at most
// bcryptWait and is turned away as busy (ERROR "300"), not refused as a
// bad password.
func TestPlainBusyServer(t *testing.T) {
	defer func(d time.Duration) { bcryptWait = d }(bcryptWait)
	bcryptWait = 50 * time.Millisecond
	holdPasswordWorkers(t)
	server := PlainServer(testUsers(t))
	hello := append(greeting("PLAIN", false), cmdFrame(commandBody("HELLO", []byte{5}, []byte("alice"), []byte{6}, []byte("secret")))...)
	conn := &memConn{r: bytes.NewReader(hello)}
	_, err := Handshake(conn, server, "ROUTER", nil, 0)
	if !errors.Is(err, errBusy) || !errors.Is(err, ErrThrottled) || errors.Is(err, ErrRefused) {
		t.Fatalf("got %v, want the busy error (not a refusal)", err)
	}
}
