package transport

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"
	"github.com/go-zeromq/zmq4/security/null"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
)

// indexesAt returns the message numbers (frame 0, decimal) a collector got.
func indexesAt(c *collector) []int {
	var out []int
	for _, m := range c.all() {
		n, err := strconv.Atoi(m.msg[0])
		if err != nil {
			panic(err)
		}
		out = append(out, n)
	}
	return out
}

func TestDealerRoundRobin(t *testing.T) {
	var got1, got2 collector
	r1 := startRouter(t, Options{OnBatch: got1.onBatch})
	r2 := startRouter(t, Options{OnBatch: got2.onBatch})
	d := startDealer(t, Options{Identity: []byte("client")}, r1.Addr(), r2.Addr())
	testutil.CheckTrue(t, wait, "the dealer connected to both routers", func() bool {
		return d.Connected() == 2 && r1.Connected([]byte("client")) && r2.Connected([]byte("client"))
	})

	const n = 20
	for i := range n {
		if !d.Send(frames(strconv.Itoa(i)), nil) {
			t.Fatalf("Send %d: got false, want true", i)
		}
	}
	testutil.CheckFor(t, wait, func() error {
		if got1.count()+got2.count() == n {
			return nil
		}
		return fmt.Errorf("%d messages arrive", n)
	})
	at1, at2 := indexesAt(&got1), indexesAt(&got2)
	if len(at1) != n/2 || len(at2) != n/2 {
		t.Fatalf("split: got %d and %d, want %d each", len(at1), len(at2), n/2)
	}
	// Alternating: each router got every other message, in order.
	for _, at := range [][]int{at1, at2} {
		for i := 1; i < len(at); i++ {
			if at[i] != at[i-1]+2 {
				t.Fatalf("a router got %v, want every other message", at)
			}
		}
	}
	if got := d.Stats().Sent.Load(); got != n {
		t.Errorf("Sent: got %d, want %d", got, n)
	}

	// One router gone: everything goes to the other.
	r1.Close()
	testutil.CheckTrue(t, wait, "the dealer sees the router gone", func() bool { return d.Connected() == 1 })
	for i := n; i < 2*n; i++ {
		if !d.Send(frames(strconv.Itoa(i)), nil) {
			t.Fatalf("Send %d: got false, want true", i)
		}
	}
	testutil.CheckFor(t, wait, func() error {
		if got2.count() == n/2+n {
			return nil
		}
		return fmt.Errorf("the other router gets the %d new messages", n)
	})
	if at := indexesAt(&got2)[n/2:]; !slices.Equal(at, seq(n, 2*n)) {
		t.Fatalf("the remaining router got %v, want %v", at, seq(n, 2*n))
	}
	if got := got1.count(); got != n/2 {
		t.Errorf("the closed router: got %d messages, want %d", got, n/2)
	}
}

// sendInOrder sends messages 0 to n-1 through d, each accepted, waits
// until got has all n, and checks their order.
func sendInOrder(t *testing.T, d *Dealer, got *collector, n int) {
	t.Helper()
	for i := range n {
		if !d.Send(frames(strconv.Itoa(i)), nil) {
			t.Fatalf("Send %d: got false, want true", i)
		}
	}
	testutil.CheckFor(t, wait, func() error {
		if c := got.count(); c != n {
			return fmt.Errorf("%d of the %d messages arrived", c, n)
		}
		return nil
	})
	if at := indexesAt(got); !slices.Equal(at, seq(0, n)) {
		t.Errorf("got the messages out of order: %v, want %v", at, seq(0, n))
	}
}

func seq(from, to int) []int {
	var out []int
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

func TestDealerNoPeer(t *testing.T) {
	d := startDealer(t, Options{})
	if d.Send(frames("x"), nil) {
		t.Fatalf("Send without a peer: got true, want false")
	}
	if got := d.Stats().DroppedUnknownIdentity.Load(); got != 1 {
		t.Errorf("DroppedUnknownIdentity: got %d, want 1", got)
	}
}

// rebind binds a new socket on addr, retrying while the old one's port is
// not free yet.
func rebind(t *testing.T, addr string, bind func(string) error) {
	t.Helper()
	testutil.CheckFor(t, wait, func() error {
		if err := bind(addr); err != nil {
			return fmt.Errorf("bind %s again: %w", addr, err)
		}
		return nil
	})
}

func TestDealerReconnect(t *testing.T) {
	var got1 collector
	r1 := startRouter(t, Options{OnBatch: got1.onBatch})
	addr := r1.Addr()
	var dealerGot collector
	d := startDealer(t, Options{Identity: []byte("client"), OnBatch: dealerGot.onBatch,
		ReconnectMin: 5 * time.Millisecond, ReconnectMax: 40 * time.Millisecond}, addr)
	testutil.CheckTrue(t, wait, "connected", func() bool { return d.Connected() == 1 })
	d.Send(frames("before"), nil)
	testutil.CheckTrue(t, wait, "the first router receives", func() bool { return got1.has("before") })

	r1.Close()
	testutil.CheckTrue(t, wait, "the dealer sees the router gone", func() bool { return d.Connected() == 0 })
	if d.Send(frames("lost"), nil) {
		t.Errorf("Send with no router: got true, want false")
	}

	var got2 collector
	r2 := NewRouter(testOptions(Options{OnBatch: got2.onBatch}))
	t.Cleanup(func() { r2.Close() })
	rebind(t, addr, r2.Bind)
	testutil.CheckTrue(t, wait, "the dealer reconnects", func() bool { return d.Connected() == 1 && r2.Connected([]byte("client")) })
	d.Send(frames("after"), nil)
	testutil.CheckTrue(t, wait, "the new router receives", func() bool { return got2.has("after") })
	r2.Send([]byte("client"), frames("back"), nil)
	testutil.CheckTrue(t, wait, "the dealer receives from the new router", func() bool { return dealerGot.has("back") })
	if got2.has("lost") {
		t.Errorf("a message sent with no router arrived later, want it dropped")
	}
}

func TestSubResubscribes(t *testing.T) {
	p1 := startPub(t, Options{})
	addr := p1.Addr()
	var got collector
	sub := startSub(t, Options{OnBatch: got.onBatch}, []string{"t", "u", "t"}, addr)
	waitFilters(t, p1, []string{"t", "u"})
	p1.Publish(fanout("t1", "m1"), nil)
	testutil.CheckTrue(t, wait, "the message before the restart arrives", func() bool { return got.has("t1") })

	p1.Close()
	testutil.CheckTrue(t, wait, "the subscriber sees the publisher gone", func() bool { return sub.Connected() == 0 })
	p2 := NewPub(testOptions(Options{}))
	t.Cleanup(func() { p2.Close() })
	rebind(t, addr, p2.Bind)
	waitFilters(t, p2, []string{"t", "u"})

	// "t" was subscribed twice: one cancel keeps it, as before the restart.
	sub.Unsubscribe([]byte("t"))
	sub.Subscribe([]byte("~sync"))
	waitFilters(t, p2, []string{"t", "u", "~sync"})
	tests := []struct {
		topic string
		want  int
	}{{"t2", 1}, {"u2", 1}, {"v2", 0}}
	for _, tt := range tests {
		if n := p2.Publish(fanout(tt.topic, "m2"), nil); n != tt.want {
			t.Errorf("Publish(%q) after the restart: got %d subscribers, want %d", tt.topic, n, tt.want)
		}
	}
	testutil.CheckTrue(t, wait, "the messages after the restart arrive", func() bool { return got.has("t2") && got.has("u2") })
}

// listenRawRouter accepts one connection as a ROUTER with go-zeromq's
// connection layer and then never reads: a peer whose queue fills.
func listenRawRouter(t *testing.T, rcvbuf int) (endpoint string, handshaken <-chan struct{}) {
	t.Helper()
	lc := net.ListenConfig{Control: rcvbufControl(rcvbuf)}
	ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	ready := make(chan struct{})
	go func() {
		defer close(done)
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		if _, err := zmq4.Open(conn, null.Security(), zmq4.Router, nil, true, nil); err != nil {
			return
		}
		close(ready)
		<-t.Context().Done() // hold the connection, never read
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return "tcp://" + ln.Addr().String(), ready
}

// TestDealerSkipsPeerAtHWM: round-robin skips a peer whose queue is full,
// so nothing is dropped while another peer has room. The full peer is
// made by hand, so that it is full for certain.
func TestDealerSkipsPeerAtHWM(t *testing.T) {
	var got collector
	r := startRouter(t, Options{OnBatch: got.onBatch})
	d := startDealer(t, Options{Identity: []byte("client")}, r.Addr())
	testutil.CheckTrue(t, wait, "connected", func() bool { return d.Connected() == 1 && r.Connected([]byte("client")) })
	full := &peer{hwm: 3, queued: 3}
	d.active.add(full)
	t.Cleanup(func() { d.active.remove(full) })

	sendInOrder(t, d, &got, 10) // all reach the peer with room
	if got := d.Stats().DroppedHWM.Load(); got != 0 {
		t.Errorf("DroppedHWM: got %d, want 0", got)
	}
	if len(full.buf) != 0 {
		t.Errorf("the full peer was given %d bytes, want 0", len(full.buf))
	}
}

func TestDealerAllPeersFull(t *testing.T) {
	stuck, ready := listenRawRouter(t, 4096)
	d := startDealer(t, Options{HWM: 2}, stuck)
	<-ready
	testutil.CheckTrue(t, wait, "connected", func() bool { return d.Connected() == 1 })
	big := string(bytes.Repeat([]byte("x"), 64<<10))
	var accepted, refused uint64
	for refused < 10 {
		if d.Send(frames(big), nil) {
			accepted++
		} else {
			refused++
		}
		if accepted*uint64(len(big)) > 512<<20 {
			t.Fatalf("the stuck peer took %d MiB without reaching its high-water mark", accepted*uint64(len(big))>>20)
		}
	}
	if got := d.Stats().DroppedHWM.Load(); got != refused {
		t.Errorf("DroppedHWM: got %d, want %d", got, refused)
	}
	if got := d.Stats().Sent.Load(); got != accepted {
		t.Errorf("Sent: got %d, want %d", got, accepted)
	}
}

// OnPeer reports a connection when its handshake is done and again when it
// ends, with the peer's identity, exactly once each.
func TestOnPeerUpAndDown(t *testing.T) {
	type change struct {
		id string
		up bool
	}
	changes := make(chan change, 8)
	r := startRouter(t, Options{Identity: []byte("proxy")})
	startDealer(t, Options{Identity: []byte("client"), OnPeer: func(id []byte, up bool) {
		changes <- change{string(id), up}
	}}, r.Addr())
	next := func() change {
		select {
		case c := <-changes:
			return c
		case <-time.After(wait):
			t.Fatal("no OnPeer call")
			return change{}
		}
	}
	if c := next(); c != (change{"proxy", true}) {
		t.Fatalf("first OnPeer: got %+v, want {proxy true}", c)
	}
	r.Close()
	if c := next(); c != (change{"proxy", false}) {
		t.Fatalf("second OnPeer: got %+v, want {proxy false}", c)
	}
	select {
	case c := <-changes:
		t.Fatalf("extra OnPeer call %+v after the router closed", c)
	default:
	}
}

// With Linger, Close writes what was queued before it closes: a sender
// that queues and closes at once loses nothing.
func TestDealerLingerFlushes(t *testing.T) {
	var got collector
	r := startRouter(t, Options{OnBatch: got.onBatch})
	d := NewDealer(testOptions(Options{Identity: []byte("client"), Linger: time.Minute}))
	if err := d.Connect(r.Addr()); err != nil {
		t.Fatal(err)
	}
	testutil.CheckTrue(t, wait, "not connected", func() bool { return d.Connected() == 1 && r.Connected([]byte("client")) })
	const n = 500
	body := make([]byte, 1024)
	for i := range n {
		if !d.Send(frames(strconv.Itoa(i)), [][]byte{body}) {
			t.Fatalf("Send %d: got false", i)
		}
	}
	d.Close()
	testutil.CheckFor(t, wait, func() error {
		if c := got.count(); c != n {
			return fmt.Errorf("router got %d of the %d messages queued before Close", c, n)
		}
		return nil
	})
}

// Linger is a bound: a peer that never reads does not hold Close longer.
func TestDealerLingerBounded(t *testing.T) {
	stuck, ready := listenRawRouter(t, 4096)
	const linger = 200 * time.Millisecond
	d := NewDealer(testOptions(Options{Identity: []byte("client"), Linger: linger}))
	if err := d.Connect(stuck); err != nil {
		t.Fatal(err)
	}
	<-ready
	testutil.CheckFor(t, wait, func() error {
		if d.Connected() != 1 {
			return errors.New("not connected")
		}
		return nil
	})
	body := make([]byte, 64<<10)
	for i := range 100 { // far more than the kernel's buffers take
		d.Send(frames(strconv.Itoa(i)), [][]byte{body})
	}
	start := time.Now()
	d.Close()
	// At least the linger (the data stays unwritten), and not much more:
	// a Close that waited for the peer would hang here.
	if took := time.Since(start); took < linger || took > linger+10*time.Second {
		t.Fatalf("Close took %v with data unwritten, want the linger %v", took, linger)
	}
}
