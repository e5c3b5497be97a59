package transport

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"

	"github.com/go-zeromq/zmq4"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
)

// ping is a PING command with a 2-byte TTL and the given context.
func ping(context []byte) []byte {
	return appendCommand(nil, zmq4.CmdPing, append([]byte{0, 10}, context...))
}

// routerPeer is the Router's peer with identity id, or nil.
func routerPeer(r *Router, id string) *peer {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.peers[id]
}

// queued is what a peer holds in its queue now: messages and commands,
// bytes.
func (p *peer) queuedNow() (n, bytes int, pong bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.queued, len(p.buf), p.pong
}

// A PING context longer than RFC 37's 16 bytes is a protocol error: the
// connection is closed and counted. A 16-byte context is answered with
// the same context.
func TestPingContextLimit(t *testing.T) {
	r := startRouter(t, Options{})
	ok := dialRaw(t, r.Addr(), zmq4.Dealer, "ok", 0)
	ok.write(ping(bytes.Repeat([]byte("c"), maxPingContext)))
	res, fr, err := ok.read()
	if err != nil || res != parseCommand {
		t.Fatalf("after a PING with a 16-byte context: got (%v, %q, %v), want a PONG", res, fr, err)
	}
	if name, data, _ := parseCommandBody([]byte(fr[0])); name != zmq4.CmdPong || string(data) != "cccccccccccccccc" {
		t.Fatalf("got command %q with %q, want PONG with the PING's context", name, data)
	}

	bad := dialRaw(t, r.Addr(), zmq4.Dealer, "bad", 0)
	bad.write(ping(bytes.Repeat([]byte("c"), maxPingContext+1)))
	waitClosed(t, bad.conn)
	testutil.CheckFor(t, wait, func() error {
		if got := r.Stats().ProtocolErrors.Load(); got != 1 {
			return fmt.Errorf("ProtocolErrors: got %d, want 1", got)
		}
		return nil
	})
	if got := r.Stats().DroppedPong.Load(); got != 0 {
		t.Errorf("DroppedPong: got %d, want 0", got)
	}
}

// A peer that pings and never reads holds at most one PONG in its queue
// (and one more in the writer's hands): the rest are dropped and counted,
// so its queue does not grow with the PINGs it sends.
func TestPingFloodOnePongQueued(t *testing.T) {
	const pings = 200000
	r := startRouter(t, Options{})
	flood := dialRaw(t, r.Addr(), zmq4.Dealer, "flood", 4096)
	var burst []byte
	for range 1000 {
		burst = append(burst, ping(bytes.Repeat([]byte("p"), maxPingContext))...)
	}
	for range pings / 1000 {
		flood.write(burst)
	}
	p := routerPeer(r, "flood")
	if p == nil {
		t.Fatal("the flooding peer is not attached")
	}
	testutil.CheckFor(t, wait, func() error {
		// The peer's socket buffers fill with PONGs it does not read; from
		// then on one PONG waits in its queue and the rest are dropped.
		if dropped := r.Stats().DroppedPong.Load(); dropped == 0 {
			return errors.New("DroppedPong: got 0, want the PONGs past the one queued")
		}
		if n, b, _ := p.queuedNow(); n > 1 || b > 32 {
			return fmt.Errorf("queue: got %d commands, %d bytes; want at most one PONG", n, b)
		}
		return nil
	})
}

// The outbound queue is bounded in bytes as well as in messages: a
// message that would take it past HWMBytes is dropped, unless the queue is
// empty; a queued PONG counts toward the bound.
func TestPeerHWMBytes(t *testing.T) {
	s := newSocket(zmq4.Router, testOptions(Options{HWM: 1000, HWMBytes: 1000}), nil)
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	p := newPeer(s, nil, a) // no writer: the queue only fills
	body := bytes.Repeat([]byte("x"), 100)
	msg := [][]byte{body} // 102 bytes on the wire
	sent := 0
	for p.send(msg, nil) {
		sent++
	}
	if want := 1000 / 102; sent != want {
		t.Fatalf("messages queued under 1000 bytes: got %d, want %d", sent, want)
	}

	q := newPeer(s, nil, a)
	huge := [][]byte{bytes.Repeat([]byte("y"), 5000)}
	if !q.send(huge, nil) {
		t.Fatal("a message larger than the byte mark into an empty queue: got dropped, want queued")
	}
	if q.send(msg, nil) {
		t.Fatal("a message behind one past the byte mark: got queued, want dropped")
	}

	r := newPeer(s, nil, a)
	if !r.sendPong([]byte("ctx")) {
		t.Fatal("first PONG: got dropped, want queued")
	}
	if r.sendPong([]byte("ctx")) {
		t.Fatal("second PONG while one is queued: got queued, want dropped")
	}
	sent = 0
	for r.send(msg, nil) {
		sent++
	}
	if pong := len(appendCommand(nil, "PONG", []byte("ctx"))); sent != (1000-pong)/102 {
		t.Fatalf("messages queued behind a %d-byte PONG: got %d, want %d", pong, sent, (1000-pong)/102)
	}
}

// countingConn records the largest buffer the reader offered to Read: the
// reader's buffer is no larger than that plus what it holds.
type countingConn struct {
	net.Conn
	mu      sync.Mutex
	largest int
}

func (c *countingConn) Read(b []byte) (int, error) {
	c.mu.Lock()
	c.largest = max(c.largest, len(b))
	c.mu.Unlock()
	return c.Conn.Read(b)
}

// A frame buffer grows only as bytes arrive: a peer that declares a
// 16 MiB frame and sends 200 KiB of it costs the reader a buffer of at
// most twice what it sent, not what it declared.
func TestReaderGrowsAsBytesArrive(t *testing.T) {
	const declared, sent = 16 << 20, 200 << 10
	a, b := net.Pipe()
	conn := &countingConn{Conn: a}
	done := make(chan struct{})
	mr := newMsgReader(conn, 64<<20, done)
	errc := make(chan error, 1)
	go func() {
		errc <- mr.run(nil, func(b *Batch) { b.Release() }, func(string, []byte) error { return nil })
	}()
	if _, err := b.Write(longHeader(0, declared)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Write(make([]byte, sent)); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if err := <-errc; err == nil {
		t.Fatal("reader: got nil, want the connection's end")
	}
	close(done)
	a.Close()
	if conn.largest > 2*sent+readBufSize {
		t.Fatalf("largest read buffer: got %d bytes after %d sent of a %d-byte frame, want at most %d",
			conn.largest, sent, declared, 2*sent+readBufSize)
	}
}

// Past Options.Conns, accepted connections are closed after their
// handshake and counted; a closed one makes room again. Connections that
// have not finished their handshake hold no slot (preauth_test.go).
func TestMaxConnections(t *testing.T) {
	r := startRouter(t, Options{Conns: NewConnLimit(2)})
	first := dialRaw(t, r.Addr(), zmq4.Dealer, "1", 0)
	dialRaw(t, r.Addr(), zmq4.Dealer, "2", 0)
	waitConnected(t, r, "1", "2") // the slots are taken after the handshake
	third := dialRaw(t, r.Addr(), zmq4.Dealer, "3", 0)
	waitClosed(t, third.conn)
	if got := r.Stats().RefusedMaxConns.Load(); got != 1 {
		t.Fatalf("RefusedMaxConns: got %d, want 1", got)
	}
	first.conn.Close()
	testutil.CheckFor(t, wait, func() error {
		if n := r.s.opts.Conns.n.Load(); n != 1 {
			return fmt.Errorf("connections held: got %d, want 1", n)
		}
		return nil
	})
	dialRaw(t, r.Addr(), zmq4.Dealer, "4", 0)
	if got := r.Stats().RefusedMaxConns.Load(); got != 1 {
		t.Fatalf("RefusedMaxConns after a slot was freed: got %d, want 1", got)
	}
}

// FuzzConnReader feeds a connection's reader (what follows the handshake:
// frames and commands) arbitrary bytes, in chunks of a size the input
// picks. Whatever arrives, the reader does not panic, ends with an error
// when the connection ends, hands on only messages within the size limit,
// and never offers a buffer larger than twice what arrived plus one pooled
// buffer.
func FuzzConnReader(f *testing.F) {
	f.Add(uint8(7), appendMsg(nil, frames("", "1.0", "2", "key", "id", "payload"), nil))
	f.Add(uint8(1), append(ping([]byte("ctx")), appendCommand(nil, "SUBSCRIBE", []byte("t"))...))
	f.Add(uint8(3), longHeader(flagMore, 1<<40))
	f.Add(uint8(0), []byte{flagCommand | flagMore, 1, 0})
	f.Add(uint8(200), append(longHeader(0, 300), make([]byte, 300)...))
	f.Fuzz(func(t *testing.T, chunk uint8, data []byte) {
		const maxMsg = 1 << 16
		a, b := net.Pipe()
		conn := &countingConn{Conn: a}
		done := make(chan struct{})
		mr := newMsgReader(conn, maxMsg, done)
		errc := make(chan error, 1)
		var msgs, bytesIn int
		go func() {
			defer a.Close() // as serve does: a reader that ends closes the connection
			errc <- mr.run(nil, func(bt *Batch) {
				for _, m := range bt.Msgs {
					if s := Msg(m).Size(); s > maxMsg {
						t.Errorf("a message of %d bytes passed a limit of %d", s, maxMsg)
					}
					bytesIn += Msg(m).Size()
					msgs++
				}
				bt.Release()
			}, func(name string, data []byte) error {
				if name == "" && len(data) > maxMsg {
					t.Errorf("a command of %d bytes passed a limit of %d", len(data), maxMsg)
				}
				return nil
			})
		}()
		step := int(chunk)%64 + 1
		for i := 0; i < len(data); i += step {
			if _, err := b.Write(data[i:min(i+step, len(data))]); err != nil {
				break // the reader ended (a protocol error) and closed its side
			}
		}
		b.Close()
		if err := <-errc; err == nil {
			t.Fatal("reader: got nil at the connection's end, want an error")
		}
		close(done)
		if bytesIn > len(data) {
			t.Fatalf("messages hold %d bytes of %d sent", bytesIn, len(data))
		}
		if conn.largest > 2*len(data)+readBufSize {
			t.Fatalf("largest read buffer: got %d after %d bytes", conn.largest, len(data))
		}
	})
}
