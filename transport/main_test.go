package transport

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"
	"github.com/go-zeromq/zmq4/security/null"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// wait bounds every wait on a condition. It only matters when a test
// fails: a passing test never waits for it, so it can be generous for a
// slow machine.
const wait = 20 * time.Second

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

func init() {
	if os.Getenv("TRANSPORT_TEST_LOG") != "" {
		quietLog = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
}

// testOptions fills what the tests want by default: a quiet logger, a
// fast reconnect.
func testOptions(o Options) Options {
	if o.Logger == nil {
		o.Logger = quietLog
	}
	if o.ReconnectMin == 0 {
		o.ReconnectMin = 5 * time.Millisecond
	}
	if o.ReconnectMax == 0 {
		o.ReconnectMax = 50 * time.Millisecond
	}
	return o
}

const anyPort = "tcp://127.0.0.1:0"

func startRouter(t testing.TB, o Options) *Router {
	t.Helper()
	r := NewRouter(testOptions(o))
	t.Cleanup(func() { r.Close() })
	if err := r.Bind(anyPort); err != nil {
		t.Fatalf("router bind: %v", err)
	}
	return r
}

func startPub(t testing.TB, o Options) *Pub {
	t.Helper()
	return startPubAt(t, o, anyPort)
}

func startPubAt(t testing.TB, o Options, endpoint string) *Pub {
	t.Helper()
	p := NewPub(testOptions(o))
	t.Cleanup(func() { p.Close() })
	if err := p.Bind(endpoint); err != nil {
		t.Fatalf("pub bind %s: %v", endpoint, err)
	}
	return p
}

func startDealer(t testing.TB, o Options, endpoints ...string) *Dealer {
	t.Helper()
	d := NewDealer(testOptions(o))
	t.Cleanup(func() { d.Close() })
	for _, ep := range endpoints {
		if err := d.Connect(ep); err != nil {
			t.Fatalf("dealer connect %s: %v", ep, err)
		}
	}
	return d
}

func startSub(t testing.TB, o Options, topics []string, endpoints ...string) *Sub {
	t.Helper()
	s := NewSub(testOptions(o))
	t.Cleanup(func() { s.Close() })
	for _, tp := range topics {
		s.Subscribe([]byte(tp))
	}
	for _, ep := range endpoints {
		if err := s.Connect(ep); err != nil {
			t.Fatalf("sub connect %s: %v", ep, err)
		}
	}
	return s
}

// received is one message a collector got, copied out of its batch.
type received struct {
	peer string
	msg  []string
}

// collector is an OnBatch that copies every message and releases the
// batch at once.
type collector struct {
	mu      sync.Mutex
	batches int
	msgs    []received
}

func (c *collector) onBatch(b *Batch) {
	c.mu.Lock()
	c.batches++
	for _, m := range b.Msgs {
		c.msgs = append(c.msgs, received{peer: string(b.Peer), msg: strs(m)})
	}
	c.mu.Unlock()
	b.Release()
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.msgs)
}

func (c *collector) batchCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.batches
}

func (c *collector) all() []received {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.msgs)
}

// has reports whether some message's frames start with want.
func (c *collector) has(want ...string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.msgs {
		if len(r.msg) >= len(want) && slices.Equal(r.msg[:len(want)], want) {
			return true
		}
	}
	return false
}

// strs copies frames into strings, for comparing and printing.
func strs(m [][]byte) []string {
	out := make([]string, len(m))
	for i, f := range m {
		out[i] = string(f)
	}
	return out
}

func frames(s ...string) [][]byte {
	out := make([][]byte, len(s))
	for i, f := range s {
		out[i] = []byte(f)
	}
	return out
}

// dialTCP opens a plain TCP connection to endpoint, with a receive buffer
// of rcvbuf bytes if rcvbuf > 0 (set before connecting, so the window is
// small from the start). The connection is closed in t.Cleanup.
func dialTCP(t testing.TB, endpoint string, rcvbuf int) net.Conn {
	t.Helper()
	addr, err := ParseEndpoint(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	d := net.Dialer{Timeout: wait}
	if rcvbuf > 0 {
		d.Control = rcvbufControl(rcvbuf)
	}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// rawPeer is a peer driven byte by byte: go-zeromq's connection layer
// does the handshake, then the test writes and reads raw ZMTP frames.
type rawPeer struct {
	t    testing.TB
	conn net.Conn
	buf  []byte // read but not yet parsed
}

// dialRaw connects to endpoint and completes the ZMTP handshake as a
// socket of type typ with identity id.
func dialRaw(t testing.TB, endpoint string, typ zmq4.SocketType, id string, rcvbuf int) *rawPeer {
	t.Helper()
	conn := dialTCP(t, endpoint, rcvbuf)
	if err := conn.SetDeadline(time.Now().Add(wait)); err != nil {
		t.Fatal(err)
	}
	if _, err := zmq4.Open(conn, null.Security(), typ, zmq4.SocketIdentity(id), false, nil); err != nil {
		t.Fatalf("raw %s peer handshake with %s: %v", typ, endpoint, err)
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		t.Fatal(err)
	}
	return &rawPeer{t: t, conn: conn}
}

func (p *rawPeer) write(b []byte) {
	p.t.Helper()
	if _, err := p.conn.Write(b); err != nil {
		p.t.Fatalf("raw write: %v", err)
	}
}

// send writes one message made of frames.
func (p *rawPeer) send(fr ...string) {
	p.t.Helper()
	p.write(appendMsg(nil, frames(fr...), nil))
}

// read returns the next message or command frame the peer receives.
func (p *rawPeer) read() (parseResult, []string, error) {
	p.t.Helper()
	if err := p.conn.SetReadDeadline(time.Now().Add(wait)); err != nil {
		return 0, nil, err
	}
	for {
		res, fr, n, _, err := parseMsg(p.buf, nil, 1<<30)
		if err != nil {
			return 0, nil, err
		}
		if res != parseIncomplete {
			out := strs(fr)
			p.buf = p.buf[n:]
			return res, out, nil
		}
		var tmp [4096]byte
		k, err := p.conn.Read(tmp[:])
		p.buf = append(p.buf, tmp[:k]...)
		if err != nil {
			return 0, nil, err
		}
	}
}

// waitClosed reads and discards until the other side closes the
// connection; it fails the test if that does not happen within wait.
func waitClosed(t testing.TB, conn net.Conn) {
	t.Helper()
	if err := conn.SetReadDeadline(time.Now().Add(wait)); err != nil {
		t.Fatal(err)
	}
	var tmp [4096]byte
	for {
		_, err := conn.Read(tmp[:])
		if err == nil {
			continue
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("connection still open after %v, want it closed by the other side", wait)
		}
		return
	}
}

// zmtpGreeting is a valid ZMTP 3.0 greeting for the NULL mechanism.
func zmtpGreeting(asServer bool) []byte {
	g := make([]byte, 64)
	g[0] = 0xFF
	g[9] = 0x7F
	g[10], g[11] = 3, 0
	copy(g[12:32], "NULL")
	if asServer {
		g[32] = 1
	}
	return g
}

// longHeader is a LONG frame header with flags and a claimed size.
func longHeader(flags byte, size uint64) []byte {
	h := []byte{flags | flagLong, 0, 0, 0, 0, 0, 0, 0, 0}
	for i := 8; i >= 1; i-- {
		h[i] = byte(size)
		size >>= 8
	}
	return h
}

// rcvbufControl is a Control for a net.Dialer or net.ListenConfig that sets
// the socket's receive buffer to rcvbuf bytes before it connects or listens.
func rcvbufControl(rcvbuf int) func(_, _ string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvbuf)
		}); err != nil {
			return err
		}
		return serr
	}
}
