package transport

import (
	"bytes"
	"fmt"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
)

// dialFrom opens a TCP connection to the socket from the local address
// ip (any 127.x.y.z is loopback on Linux), and sends nothing.
func dialFrom(t testing.TB, endpoint, ip string) net.Conn {
	t.Helper()
	addr, err := ParseEndpoint(endpoint)
	if err != nil {
		t.Fatal(err)
	}
	d := net.Dialer{Timeout: wait, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, ip, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func waitPending(t testing.TB, l *HandshakeLimit, want int) {
	t.Helper()
	testutil.CheckFor(t, wait, func() error {
		if n := l.pending(); n != want {
			return fmt.Errorf("handshakes pending: got %d, want %d", n, want)
		}
		return nil
	})
}

// Connections in their handshake hold no --max-connections slot: with a
// limit of 2 peers and 5 connections that never send their greeting, two
// peers still connect; the third is refused after its handshake.
func TestIdleConnectionsHoldNoPeerSlot(t *testing.T) {
	hs := NewHandshakeLimit(100, 100)
	r := startRouter(t, Options{Conns: NewConnLimit(2), Handshakes: hs})
	for range 5 {
		dialTCP(t, r.Addr(), 0)
	}
	waitPending(t, hs, 5)
	dialRaw(t, r.Addr(), zmq4.Dealer, "a", 0)
	dialRaw(t, r.Addr(), zmq4.Dealer, "b", 0)
	waitConnected(t, r, "a", "b")
	third := dialRaw(t, r.Addr(), zmq4.Dealer, "c", 0)
	waitClosed(t, third.conn)
	if got := r.Stats().RefusedMaxConns.Load(); got != 1 {
		t.Fatalf("RefusedMaxConns: got %d, want 1", got)
	}
	waitPending(t, hs, 5)
}

func waitConnected(t testing.TB, r *Router, ids ...string) {
	t.Helper()
	testutil.CheckFor(t, wait, func() error {
		for _, id := range ids {
			if !r.Connected([]byte(id)) {
				return fmt.Errorf("peer %q not connected", id)
			}
		}
		return nil
	})
}

// A connection that sends no greeting is closed after GreetingTimeout and
// counted; one that sends its greeting in time has the handshake timeout
// for the rest, even when that takes longer than the greeting's deadline.
func TestGreetingTimeout(t *testing.T) {
	const greeting = 300 * time.Millisecond
	r := startRouter(t, Options{GreetingTimeout: greeting, HandshakeTimeout: wait})
	silent := dialTCP(t, r.Addr(), 0)
	start := time.Now()
	waitClosed(t, silent)
	if took := time.Since(start); took < greeting/2 {
		t.Fatalf("silent connection closed after %v, want about %v", took, greeting)
	}
	testutil.CheckFor(t, wait, func() error {
		if got := r.Stats().RefusedGreetingTimeout.Load(); got != 1 {
			return fmt.Errorf("RefusedGreetingTimeout: got %d, want 1", got)
		}
		return nil
	})

	// The greeting at once, READY after twice the greeting's deadline.
	slow := dialTCP(t, r.Addr(), 0)
	if _, err := slow.Write(nullGreeting()); err != nil {
		t.Fatal(err)
	}
	<-time.After(2 * greeting) // the delay under test, not a wait for a condition
	ready := appendCommand(nil, "READY", readyProps("Socket-Type", "DEALER", "Identity", "slow"))
	if _, err := slow.Write(ready); err != nil {
		t.Fatal(err)
	}
	waitConnected(t, r, "slow")
	if got := r.Stats().RefusedGreetingTimeout.Load(); got != 1 {
		t.Fatalf("RefusedGreetingTimeout after a slow handshake: got %d, want 1", got)
	}
}

// nullGreeting is a ZMTP 3.0 greeting for the NULL mechanism.
func nullGreeting() []byte {
	g := make([]byte, zmtpGreetingLen)
	g[0], g[9], g[10] = 0xFF, 0x7F, 3
	copy(g[12:], "NULL")
	return g
}

func readyProps(kv ...string) []byte {
	var b []byte
	for i := 0; i < len(kv); i += 2 {
		b = append(b, byte(len(kv[i])))
		b = append(b, kv[i]...)
		b = append(b, 0, 0, byte(len(kv[i+1])>>8), byte(len(kv[i+1])))
		b = append(b, kv[i+1]...)
	}
	return b
}

// Past the bound on handshakes, a new connection takes the slot of the
// oldest handshake, once that one has waited EvictAge, which is closed and
// counted: silent connections that fill every slot cannot keep a peer out.
func TestHandshakeLimitEvictsOldest(t *testing.T) {
	hs := NewHandshakeLimit(4, 100)
	hs.EvictAge = 0 // the idle connections are old enough at once
	r := startRouter(t, Options{Handshakes: hs})
	var idle []net.Conn
	for range 4 {
		idle = append(idle, dialTCP(t, r.Addr(), 0))
		waitPending(t, hs, len(idle)) // in order: the first is the oldest
	}
	dialRaw(t, r.Addr(), zmq4.Dealer, "legit", 0)
	waitConnected(t, r, "legit")
	waitClosed(t, idle[0])
	if got := r.Stats().RefusedHandshakeLimit.Load(); got != 1 {
		t.Fatalf("RefusedHandshakeLimit: got %d, want 1", got)
	}
	if got := r.Stats().RefusedSourceLimit.Load(); got != 0 {
		t.Fatalf("RefusedSourceLimit: got %d, want 0", got)
	}
	waitPending(t, hs, 3)
}

// Past the bound per source address, a new connection takes the slot of
// the oldest handshake from its own address, not another's.
func TestHandshakeLimitPerSource(t *testing.T) {
	hs := NewHandshakeLimit(100, 2)
	hs.EvictAge = 0 // the idle connections are old enough at once
	r := startRouter(t, Options{Handshakes: hs})
	other := dialFrom(t, r.Addr(), "127.0.0.2") // the oldest of all
	waitPending(t, hs, 1)
	a := dialFrom(t, r.Addr(), "127.0.0.1")
	waitPending(t, hs, 2)
	dialFrom(t, r.Addr(), "127.0.0.1")
	waitPending(t, hs, 3)
	dialRaw(t, r.Addr(), zmq4.Dealer, "legit", 0) // from 127.0.0.1
	waitConnected(t, r, "legit")
	waitClosed(t, a)
	if got := r.Stats().RefusedSourceLimit.Load(); got != 1 {
		t.Fatalf("RefusedSourceLimit: got %d, want 1", got)
	}
	if err := other.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	var err error
	for err == nil {
		_, err = other.Read(make([]byte, 64)) // the proxy's greeting, then nothing
	}
	if !isTimeout(err) {
		t.Fatalf("the other address's connection: read got %v, want a timeout (still open)", err)
	}
	waitPending(t, hs, 2)
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// Identities longer than ZMTP's 255 bytes are refused and counted, and a
// message to one is dropped and counted; 255 bytes is fine.
func TestIdentityLimit(t *testing.T) {
	r := startRouter(t, Options{})
	ok := strings.Repeat("i", maxIdentity)
	dialRaw(t, r.Addr(), zmq4.Dealer, ok, 0)
	waitConnected(t, r, ok)
	for i, n := range []int{256, 60000} {
		// By hand: go-zeromq's client cuts a long identity short.
		c := dialTCP(t, r.Addr(), 0)
		if _, err := c.Write(append(nullGreeting(), appendCommand(nil, "READY",
			readyProps("Socket-Type", "DEALER", "Identity", strings.Repeat("x", n)))...)); err != nil {
			t.Fatal(err)
		}
		waitClosed(t, c)
		if got := r.Stats().RefusedIdentity.Load(); got != uint64(i+1) {
			t.Fatalf("RefusedIdentity after an identity of %d bytes: got %d, want %d", n, got, i+1)
		}
	}
	if r.Send(bytes.Repeat([]byte("x"), 256), frames("m"), nil) {
		t.Fatal("Send to a 256-byte identity: got true, want false")
	}
	if got := r.Stats().DroppedIdentity.Load(); got != 1 {
		t.Fatalf("DroppedIdentity: got %d, want 1", got)
	}
	if !r.Send([]byte(ok), frames("m"), nil) {
		t.Fatal("Send to a 255-byte identity: got false, want true")
	}
}

// Refusals names every Refused* counter: /metrics reads it.
func TestStatsRefusalsHasEveryCounter(t *testing.T) {
	var st Stats
	typ := reflect.TypeFor[Stats]()
	want, wantSum := 0, uint64(0)
	for i := range typ.NumField() {
		if strings.HasPrefix(typ.Field(i).Name, "Refused") && typ.Field(i).Name != "RefusedTopics" {
			want++
			wantSum += uint64(i + 1)
			reflect.ValueOf(&st).Elem().Field(i).Addr().Interface().(interface{ Add(uint64) uint64 }).Add(uint64(i + 1))
		}
	}
	got := st.Refusals()
	sum := uint64(0)
	for _, n := range got {
		sum += n
	}
	if len(got) != want || sum != wantSum {
		t.Fatalf("Refusals: %d reasons summing to %d, want %d summing to %d", len(got), sum, want, wantSum)
	}
}

// Past a bound, a newcomer does not take the slot of a handshake younger
// than EvictAge: it waits, unread, and its handshake starts when one of
// theirs ends; the young handshakes keep their slots meanwhile.
func TestHandshakeLimitQueuesBehindYoung(t *testing.T) {
	hs := NewHandshakeLimit(100, 2)
	hs.EvictAge = time.Hour
	r := startRouter(t, Options{Handshakes: hs})
	a := dialTCP(t, r.Addr(), 0)
	b := dialTCP(t, r.Addr(), 0)
	for _, c := range []net.Conn{a, b} {
		if _, err := c.Write(nullGreeting()[:1]); err != nil { // a herd's: speaking, slowly
			t.Fatal(err)
		}
	}
	waitPending(t, hs, 2)
	newcomer := dialTCP(t, r.Addr(), 0)
	testutil.CheckFor(t, wait, func() error {
		if n := hs.queued(); n != 1 {
			return fmt.Errorf("waiting for a slot: %d, want 1", n)
		}
		return nil
	})
	for i, c := range []net.Conn{a, b, newcomer} {
		if err := c.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		var err error
		for err == nil {
			_, err = c.Read(make([]byte, 64)) // a greeting (not the newcomer's), then nothing
		}
		if !isTimeout(err) {
			t.Fatalf("connection %d: read got %v, want a timeout (still open)", i, err)
		}
	}
	if got := r.Stats().RefusedSourceLimit.Load(); got != 0 {
		t.Fatalf("RefusedSourceLimit: got %d, want 0 (nothing refused or evicted)", got)
	}
	a.Close() // its handshake fails: the newcomer's starts
	if err := newcomer.SetReadDeadline(time.Now().Add(wait)); err != nil {
		t.Fatal(err)
	}
	if _, err := newcomer.Read(make([]byte, 64)); err != nil {
		t.Fatalf("the newcomer got no greeting once a slot freed: %v", err)
	}
	if n := hs.queued(); n != 0 {
		t.Fatalf("still waiting: %d, want 0", n)
	}
}

// A herd from one address, many times its bound, all connects, and few
// handshakes in progress are cut: the newcomers past the bound are refused
// before theirs starts, and connect again. Evicting the oldest handshake
// of the address at once instead (SourceEvictAge 0) cuts handshakes
// midway, and a herd that reconnects faster than they end never connects.
func TestHandshakeLimitPerSourceHerd(t *testing.T) {
	const n = 300
	hs := NewHandshakeLimit(1000, 4)
	r := startRouter(t, Options{Handshakes: hs})
	for i := range n {
		startDealer(t, Options{Identity: []byte(fmt.Sprintf("herd-%03d", i)), ReconnectMin: 10 * time.Millisecond, ReconnectMax: 50 * time.Millisecond}, r.Addr())
	}
	testutil.CheckFor(t, 2*wait, func() error {
		if got := r.Stats().Peers.Load(); got != n {
			return fmt.Errorf("peers connected: %d of %d (refused so far: %d)", got, n, r.Stats().RefusedSourceLimit.Load())
		}
		return nil
	})
	t.Logf("%d peers from one address with a bound of 4: %d refusals on the way", n, r.Stats().RefusedSourceLimit.Load())
	// A handshake that outlasts SourceEvictAge on a loaded machine (-race,
	// 300 at once on 2 cores) may still be cut: a few dozen were seen
	// here; with SourceEvictAge 0, 8,719.
	if cut := r.Stats().BadHandshake.Load(); cut > n {
		t.Errorf("handshakes cut midway: %d, want at most one per peer (%d)", cut, n)
	}
}

// A socket that closes closes the connections still waiting for a
// handshake slot (HandshakeLimit.forget): they hold descriptors, and no
// goroutine of the socket would ever serve them.
func TestHandshakeLimitQueuedClosedWithSocket(t *testing.T) {
	hs := NewHandshakeLimit(100, 1)
	hs.EvictAge = time.Hour
	r := startRouter(t, Options{Handshakes: hs})
	busy := dialTCP(t, r.Addr(), 0)
	if _, err := busy.Write(nullGreeting()[:1]); err != nil {
		t.Fatal(err)
	}
	waitPending(t, hs, 1)
	waiting := dialTCP(t, r.Addr(), 0)
	testutil.CheckFor(t, wait, func() error {
		if n := hs.queued(); n != 1 {
			return fmt.Errorf("waiting for a slot: %d, want 1", n)
		}
		return nil
	})
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, waiting)
	if n := hs.queued(); n != 0 {
		t.Fatalf("still waiting after the socket closed: %d, want 0", n)
	}
}
