package security

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// PlainUsers is the user list of a PLAIN server: user name to bcrypt
// hash. It can be reloaded while servers use it.
type PlainUsers struct {
	path  string
	users atomic.Pointer[userSet]
	live  liveSet // connections of users logged in
}

// userSet is one version of the list. dummy is a hash of the list's
// highest cost, compared against when the user is unknown, so that an
// unknown user takes as long to refuse as a wrong password.
type userSet struct {
	hashes map[string][]byte
	dummy  []byte
}

func newUserSet(hashes map[string][]byte) (*userSet, error) {
	cost := bcrypt.MinCost
	for _, h := range hashes {
		if c, err := bcrypt.Cost(h); err == nil && c > cost {
			cost = c
		}
	}
	dummy, err := bcrypt.GenerateFromPassword([]byte("zmq-proxy: no such user"), cost)
	if err != nil {
		return nil, err
	}
	return &userSet{hashes: hashes, dummy: dummy}, nil
}

// maxPassword is the longest password checked: bcrypt reads only the
// first 72 bytes (x/crypto's CompareHashAndPassword, which nats-server
// uses too, ignores the rest), so a longer one would be accepted whatever
// follows them. GenerateFromPassword refuses to hash one, so no hash in a
// user file comes from one: refusing it turns no right password away.
const maxPassword = 72

// hashSettle is how long a HELLO waits before it may take a worker, so
// that a peer that hangs up at once is seen gone. A real client waits for
// WELCOME; bcrypt itself takes ten times longer at cost 10.
var hashSettle = 5 * time.Millisecond

// LoadPlainUsers reads path: one "user:bcrypt-hash" per line, blank lines
// and lines starting with # ignored. A line that is not that is an error
// naming the file and line.
func LoadPlainUsers(path string) (*PlainUsers, error) {
	u := &PlainUsers{path: path}
	if err := u.Reload(); err != nil {
		return nil, err
	}
	return u, nil
}

// Reload reads the file again; on error the previous list stays.
func (u *PlainUsers) Reload() error {
	if u.path == "" {
		return nil
	}
	data, err := os.ReadFile(u.path)
	if err != nil {
		return fmt.Errorf("plain users: %w", err)
	}
	m, err := parsePlainUsers(data)
	if err != nil {
		return fmt.Errorf("plain users: %s: %w", u.path, err)
	}
	set, err := newUserSet(m)
	if err != nil {
		return fmt.Errorf("plain users: %s: %w", u.path, err)
	}
	u.users.Store(set)
	return nil
}

func parsePlainUsers(data []byte) (map[string][]byte, error) {
	m := make(map[string][]byte)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok || user == "" || len(user) > 255 {
			return nil, fmt.Errorf("line %d: want user:bcrypt-hash", n)
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return nil, fmt.Errorf("line %d: user %q: not a bcrypt hash (%v)", n, user, err)
		}
		m[user] = []byte(hash)
	}
	return m, sc.Err()
}

// PlainUserList is a user list from a map of user name to bcrypt hash.
func PlainUserList(hashes map[string]string) (*PlainUsers, error) {
	m := make(map[string][]byte, len(hashes))
	for user, h := range hashes {
		if _, err := bcrypt.Cost([]byte(h)); err != nil {
			return nil, fmt.Errorf("user %q: not a bcrypt hash (%v)", user, err)
		}
		m[user] = []byte(h)
	}
	set, err := newUserSet(m)
	if err != nil {
		return nil, err
	}
	u := &PlainUsers{}
	u.users.Store(set)
	return u, nil
}

// Len is the number of users.
func (u *PlainUsers) Len() int {
	if set := u.users.Load(); set != nil {
		return len(set.hashes)
	}
	return 0
}

// Check reports whether password is user's.
func (u *PlainUsers) Check(user, password []byte) bool {
	ok, _, _ := u.check(nil, user, password)
	return ok
}

// check is Check for conn's peer (conn may be nil): it waits for a
// password-check worker (errBusy when none comes, errGone when the peer
// hangs up meanwhile) and returns the hash compared against.
func (u *PlainUsers) check(conn net.Conn, user, password []byte) (bool, string, error) {
	set := u.users.Load()
	if set == nil || len(password) > maxPassword {
		return false, "", nil
	}
	hash, known := set.hashes[string(user)]
	if !known {
		hash = set.dummy
	}
	if conn != nil && hashSettle > 0 {
		// A HELLO is hashed only once its peer has stayed connected a
		// moment: a flood that hangs up right after each HELLO is then
		// dropped here, without taking a worker from anyone.
		t := time.NewTimer(hashSettle)
		<-t.C
		if peerGone(conn) {
			return false, "", errGone
		}
	}
	src, err := passwordChecks.acquire(conn)
	if err != nil {
		return false, "", err
	}
	defer passwordChecks.release(src)
	// The last moment to notice that the peer is gone: a flood that hangs
	// up right after its HELLO costs no hash.
	if conn != nil && peerGone(conn) {
		return false, "", errGone
	}
	err = bcrypt.CompareHashAndPassword(hash, password)
	return known && err == nil, string(hash), nil
}

// track registers conn, the connection of user logged in with hash, until
// it is closed.
func (u *PlainUsers) track(conn net.Conn, user, hash string) (*liveConn, net.Conn) {
	return u.live.add(conn, user, hash)
}

// still reports whether user is in the list with the same hash.
func (u *PlainUsers) still(user, hash string) bool {
	set := u.users.Load()
	return set != nil && string(set.hashes[user]) == hash
}

// CloseRevoked closes the connections of users no longer in the list, or
// whose password hash has changed (call it after Reload; nats-server too
// disconnects, on reload, the clients its new users would not admit), and
// returns how many it closed.
func (u *PlainUsers) CloseRevoked() int {
	if u == nil {
		return 0
	}
	return u.live.closeIf(func(l *liveConn) bool { return !u.still(l.who, l.hash) })
}

// Sessions is the number of connections of logged-in users open now.
func (u *PlainUsers) Sessions() int {
	if u == nil {
		return 0
	}
	return u.live.Len()
}

type plainServer struct{ users *PlainUsers }

// PlainServer is the server side of PLAIN (RFC 24): a client's user name
// and password are checked against users.
func PlainServer(users *PlainUsers) Mechanism { return &plainServer{users: users} }

func (*plainServer) Name() string   { return "PLAIN" }
func (*plainServer) AsServer() bool { return true }

func (m *plainServer) handshake(c *cmdConn, socketType string, identity []byte, _ int64) (*Session, error) {
	body, err := c.readCommand()
	if err != nil {
		return nil, err
	}
	name, data, err := command(body)
	if err != nil {
		return nil, err
	}
	if name != "HELLO" {
		return nil, fmt.Errorf("%w: PLAIN: expected HELLO, got %q", ErrHandshake, printable(name))
	}
	// HELLO: user length, user, password length, password, nothing else.
	if len(data) < 1 || len(data) < 1+int(data[0])+1 {
		return nil, fmt.Errorf("%w: PLAIN: malformed HELLO", ErrHandshake)
	}
	user := data[1 : 1+int(data[0])]
	rest := data[1+int(data[0]):]
	if int(rest[0]) != len(rest)-1 {
		return nil, fmt.Errorf("%w: PLAIN: malformed HELLO", ErrHandshake)
	}
	password := rest[1:]
	userName := string(user)
	if len(password) > maxPassword {
		return nil, refuse(c, "400", fmt.Errorf("%w: PLAIN: user %q: password longer than %d bytes", ErrRefused, printable(userName), maxPassword))
	}
	ok, hash := false, ""
	if m.users != nil {
		if ok, hash, err = m.users.check(c.conn, user, password); err != nil {
			if errors.Is(err, ErrThrottled) {
				// RFC 24: a server that rejects the client sends ERROR;
				// "300" is ZAP's temporary failure, libzmq's code for it.
				return nil, refuse(c, "300", err)
			}
			return nil, err
		}
	}
	if !ok {
		return nil, refuse(c, "400", fmt.Errorf("%w: PLAIN: user %q: unknown user or wrong password", ErrRefused, printable(userName)))
	}
	if err := c.writeCommand(commandBody("WELCOME")); err != nil {
		return nil, err
	}
	body, err = c.readCommand()
	if err != nil {
		return nil, err
	}
	name, data, err = command(body)
	if err != nil {
		return nil, err
	}
	if name != "INITIATE" {
		return nil, fmt.Errorf("%w: PLAIN: expected INITIATE, got %q", ErrHandshake, printable(name))
	}
	meta, err := finishMetadata(data, socketType)
	if err != nil {
		return nil, err
	}
	// Registered before READY and checked again, so that a reload of the
	// users at any moment either sees this session or is seen by it.
	live, conn := m.users.track(c.conn, userName, hash)
	if !m.users.still(userName, hash) {
		live.Close()
		return nil, fmt.Errorf("%w: PLAIN: user %q was removed", ErrRefused, printable(userName))
	}
	if err := c.writeCommand(commandBody("READY", appendMetadata(nil, socketType, identity))); err != nil {
		live.Close()
		return nil, err
	}
	return &Session{Conn: conn, Peer: meta, User: userName}, nil
}

type plainClient struct{ user, password string }

// PlainClient is the client side of PLAIN: it sends user and password
// (each at most 255 bytes) in clear text, so use it only on a network
// that is otherwise protected.
func PlainClient(user, password string) (Mechanism, error) {
	if len(user) > 255 || len(password) > 255 {
		return nil, fmt.Errorf("%w: PLAIN user name and password are at most 255 bytes each", ErrKey)
	}
	return &plainClient{user: user, password: password}, nil
}

func (*plainClient) Name() string   { return "PLAIN" }
func (*plainClient) AsServer() bool { return false }

func (m *plainClient) handshake(c *cmdConn, socketType string, identity []byte, _ int64) (*Session, error) {
	hello := commandBody("HELLO", []byte{byte(len(m.user))}, []byte(m.user), []byte{byte(len(m.password))}, []byte(m.password))
	if err := c.writeCommand(hello); err != nil {
		return nil, err
	}
	if err := expect(c, "WELCOME", func(data []byte) error {
		if len(data) != 0 {
			return fmt.Errorf("%w: PLAIN: malformed WELCOME", ErrHandshake)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if err := c.writeCommand(commandBody("INITIATE", appendMetadata(nil, socketType, identity))); err != nil {
		return nil, err
	}
	var meta Metadata
	if err := expect(c, "READY", func(data []byte) (err error) {
		meta, err = finishMetadata(data, socketType)
		return err
	}); err != nil {
		return nil, err
	}
	return &Session{Conn: c.conn, Peer: meta}, nil
}

// libzmqPlainError is how libzmq's PLAIN server spells ERROR: its source
// has "\x05ERROR", where C reads "\x05E" as one byte, 0x5E, so the command
// arrives as "^RROR" and a reason (seen with libzmq 4.3.4, still so in its
// plain_common.hpp). We read it as the ERROR it means.
const libzmqPlainError = "\x5eRROR"

// expect reads one command: want is handed to f, an ERROR is ErrRefused
// with the server's reason, anything else a protocol error.
func expect(c *cmdConn, want string, f func(data []byte) error) error {
	body, err := c.readCommand()
	if err != nil {
		return err
	}
	if bytes.HasPrefix(body, []byte(libzmqPlainError)) {
		return fmt.Errorf("%w: the server says %q", ErrRefused, errorReason(body[len(libzmqPlainError):]))
	}
	name, data, err := command(body)
	if err != nil {
		return err
	}
	switch name {
	case want:
		return f(data)
	case "ERROR":
		return fmt.Errorf("%w: the server says %q", ErrRefused, errorReason(data))
	default:
		return fmt.Errorf("%w: expected %s, got %q", ErrHandshake, want, printable(name))
	}
}
