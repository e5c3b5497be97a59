package security

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// memConn is a net.Conn in memory: it reads r (io.EOF when r is nil)
// and writes to w (discards when w is nil).
type memConn struct {
	r io.Reader
	w io.Writer
}

func (c *memConn) Read(p []byte) (int, error) {
	if c.r == nil {
		return 0, io.EOF
	}
	return c.r.Read(p)
}

func (c *memConn) Write(p []byte) (int, error) {
	if c.w == nil {
		return len(p), nil
	}
	return c.w.Write(p)
}

func (c *memConn) Close() error                     { return nil }
func (c *memConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *memConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *memConn) SetDeadline(time.Time) error      { return nil }
func (c *memConn) SetReadDeadline(time.Time) error  { return nil }
func (c *memConn) SetWriteDeadline(time.Time) error { return nil }

// teeConn records what is written to it.
type teeConn struct {
	net.Conn
	mu  sync.Mutex
	out bytes.Buffer
}

func (c *teeConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.out.Write(p)
	c.mu.Unlock()
	return c.Conn.Write(p)
}

// transcript runs a real handshake between server and client and returns
// what the client sent and what the server sent: seeds that reach deep
// into the other side.
func transcript(t testing.TB, server, client Mechanism, serverType, clientType string) (fromClient, fromServer []byte) {
	t.Helper()
	srvConn, cliConn := tcpPair(t)
	s, c := &teeConn{Conn: srvConn}, &teeConn{Conn: cliConn}
	errc := make(chan error, 1)
	go func() {
		s.SetDeadline(time.Now().Add(wait))
		_, err := Handshake(s, server, serverType, []byte("s"), 0)
		errc <- err
	}()
	c.SetDeadline(time.Now().Add(wait))
	if _, err := Handshake(c, client, clientType, []byte("c"), 0); err != nil {
		t.Fatalf("transcript: client: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("transcript: server: %v", err)
	}
	return c.out.Bytes(), s.out.Bytes()
}

// allocBound is the most a handshake may allocate, whatever a peer sends
// before it is authenticated: the command buffer (maxCommand), one
// INITIATE plaintext (< maxCommand), metadata, and the crypto's small
// change.
const allocBound = 4*maxCommand + 16<<10

// allocated runs f and returns the bytes it allocated (this goroutine's
// work dominates: nothing else runs in a fuzz worker).
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// fuzzHandshake runs m's handshake over data. It must allocate within
// allocBound and end in one of the package's errors or the input's end;
// a session comes out only where pass says the input earned one.
func fuzzHandshake(t *testing.T, m Mechanism, typ string, data []byte, pass func(data []byte, s *Session) bool) {
	var err error
	var s *Session
	n := allocated(func() {
		s, err = Handshake(&memConn{r: bytes.NewReader(data)}, m, typ, []byte("id"), 1<<20)
	})
	if n > allocBound {
		t.Fatalf("handshake allocated %d bytes for %d bytes of input (err %v), bound %d", n, len(data), err, allocBound)
	}
	if err == nil {
		if !pass(data, s) {
			t.Fatalf("handshake accepted %d bytes of input it should refuse: %x", len(data), data)
		}
		return
	}
	for _, want := range []error{ErrHandshake, ErrRefused, ErrReplayed, ErrThrottled, io.EOF, io.ErrUnexpectedEOF} {
		if errors.Is(err, want) {
			return
		}
	}
	t.Fatalf("handshake failed with an unclassified error: %v", err)
}

// never: no input passes (a CURVE peer needs secrets the input cannot
// hold: the cookie key is new on every connection).
func never([]byte, *Session) bool { return false }

// plainHelloIs reports whether data's first command after the greeting
// is a PLAIN HELLO of user with password, read independently of plain.go.
func plainHelloIs(user, password string) func([]byte, *Session) bool {
	want := append([]byte{0x04, byte(8 + len(user) + len(password)), 5}, "HELLO"...)
	want = append(want, byte(len(user)))
	want = append(want, user...)
	want = append(want, byte(len(password)))
	want = append(want, password...)
	return func(data []byte, s *Session) bool {
		return len(data) > 64 && bytes.HasPrefix(data[64:], want) && s.User == user
	}
}

// unlimited is a CURVE server without rate limits, so that the fuzzer
// reaches past HELLO.
func unlimited(m Mechanism) Mechanism {
	m.(*curveServer).guard = newCurveGuardLimits(rate.Inf, 0, rate.Inf, 0)
	return m
}

func seedHandshake(f *testing.F, full []byte) {
	f.Add(full)
	for _, cut := range []int{1, 10, 64, 66, 100, 264, 300, len(full) - 1} {
		if cut < len(full) {
			f.Add(full[:cut])
		}
	}
	// A forged command header claiming 2^62 bytes right after the greeting.
	forged := append(bytes.Clone(full[:64]), flagCommand|flagLong)
	forged = binary.BigEndian.AppendUint64(forged, 1<<62)
	f.Add(forged)
	// A flipped byte in every command.
	for i := 64; i < len(full); i += 37 {
		b := bytes.Clone(full)
		b[i] ^= 0x40
		f.Add(b)
	}
}

func FuzzCurveServerHandshake(f *testing.F) {
	srvKP, cliKP := mustKeyPair(f), mustKeyPair(f)
	// Not the transcript's server: that one would refuse every seed as a
	// replay at its HELLO, and the fuzzer would reach no further.
	fromClient, _ := transcript(f, CurveServer(srvKP, AllowKeys(cliKP.Public)), CurveClient(srvKP.Public, cliKP), "ROUTER", "DEALER")
	seedHandshake(f, fromClient)
	f.Fuzz(func(t *testing.T, data []byte) {
		server := unlimited(CurveServer(srvKP, AllowKeys(cliKP.Public)))
		fuzzHandshake(t, server, "ROUTER", data, never)
	})
}

func FuzzCurveClientHandshake(f *testing.F) {
	srvKP, cliKP := mustKeyPair(f), mustKeyPair(f)
	client := CurveClient(srvKP.Public, cliKP)
	_, fromServer := transcript(f, CurveServer(srvKP, AllowKeys(cliKP.Public)), client, "ROUTER", "DEALER")
	seedHandshake(f, fromServer)
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzHandshake(t, client, "DEALER", data, never)
	})
}

func FuzzPlainServerHandshake(f *testing.F) {
	server := PlainServer(testUsers(f))
	cli, _ := PlainClient("alice", "secret")
	fromClient, _ := transcript(f, server, cli, "ROUTER", "DEALER")
	seedHandshake(f, fromClient)
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzHandshake(t, server, "ROUTER", data, plainHelloIs("alice", "secret"))
	})
}

func FuzzPlainClientHandshake(f *testing.F) {
	cli, _ := PlainClient("alice", "secret")
	_, fromServer := transcript(f, PlainServer(testUsers(f)), cli, "ROUTER", "DEALER")
	seedHandshake(f, fromServer)
	f.Fuzz(func(t *testing.T, data []byte) {
		// PLAIN does not authenticate the server: any WELCOME and READY
		// from a ROUTER pass.
		fuzzHandshake(t, cli, "DEALER", data, func(_ []byte, s *Session) bool { return s.Peer[PropSocketType] == "ROUTER" })
	})
}

// FuzzMessageReader feeds the data-phase reader arbitrary ciphertext
// (seeded with real sealed bursts): it must not panic, must hand on only
// what decrypts, and must not allocate beyond twice the largest message.
func FuzzMessageReader(f *testing.F) {
	var shared [32]byte
	shared[0] = 7
	const maxMsg = 1 << 16
	seal := func(msgs ...[][]byte) []byte {
		var w bytes.Buffer
		bc := newBoxConn(&memConn{r: &bytes.Buffer{}}, &shared, nonceMessageC, nonceMessageS, maxMsg)
		bc.Conn = &memConn{w: &w}
		var plain bytes.Buffer
		for _, m := range msgs {
			writeMsg(&plain, m...)
		}
		if _, err := bc.Write(plain.Bytes()); err != nil {
			f.Fatal(err)
		}
		return w.Bytes()
	}
	good := seal([][]byte{[]byte("a"), {}}, [][]byte{bytes.Repeat([]byte("b"), 300)})
	f.Add(good)
	f.Add(good[:len(good)-1])
	big := append([]byte{flagLong}, binary.BigEndian.AppendUint64(nil, 1<<40)...)
	f.Add(big)
	f.Fuzz(func(t *testing.T, data []byte) {
		bc := newBoxConn(&memConn{r: bytes.NewReader(data)}, &shared, nonceMessageS, nonceMessageC, maxMsg)
		var err error
		n := allocated(func() {
			buf := make([]byte, 4096)
			for err == nil {
				_, err = bc.Read(buf)
			}
		})
		if n > 4*maxMsg+256<<10 {
			t.Fatalf("reader allocated %d bytes for %d bytes of input", n, len(data))
		}
		if !errors.Is(err, io.EOF) && !errors.Is(err, ErrDecrypt) && !errors.Is(err, ErrTooLarge) {
			t.Fatalf("reader error %v, want EOF, ErrDecrypt or ErrTooLarge", err)
		}
	})
}
