package transport

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/go-zeromq/zmq4"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
)

func TestRouterRoutesByIdentity(t *testing.T) {
	var inbound collector
	r := startRouter(t, Options{OnBatch: inbound.onBatch})
	var aliceGot, bobGot collector
	alice := startDealer(t, Options{Identity: []byte("alice"), OnBatch: aliceGot.onBatch}, r.Addr())
	bob := startDealer(t, Options{Identity: []byte("bob"), OnBatch: bobGot.onBatch}, r.Addr())
	testutil.CheckTrue(t, wait, "alice and bob connected to the router", func() bool { return r.Connected([]byte("alice")) && r.Connected([]byte("bob")) })

	tests := []struct {
		name string
		to   string
		msg  []string
	}{
		{name: "to alice", to: "alice", msg: []string{"", "1.0", "client", "1", "m1", "for alice"}},
		{name: "to bob", to: "bob", msg: []string{"", "1.0", "client", "1", "m2", "for bob"}},
		{name: "to alice again", to: "alice", msg: []string{"", "1.0", "client", "5", "m3"}},
	}
	wantAt := map[string][][]string{}
	for _, tt := range tests {
		if !r.Send([]byte(tt.to), frames(tt.msg[:3]...), frames(tt.msg[3:]...)) {
			t.Fatalf("%s: Send returned false, want true", tt.name)
		}
		wantAt[tt.to] = append(wantAt[tt.to], tt.msg)
	}
	for id, c := range map[string]*collector{"alice": &aliceGot, "bob": &bobGot} {
		want := wantAt[id]
		testutil.CheckFor(t, wait, func() error {
			if c.count() >= len(want) {
				return nil
			}
			return fmt.Errorf("%s receives %d messages", id, len(want))
		})
		got := c.all()
		if len(got) != len(want) {
			t.Fatalf("%s: got %d messages, want %d", id, len(got), len(want))
		}
		for i := range want {
			if !slices.Equal(got[i].msg, want[i]) {
				t.Errorf("%s message %d: got %q, want %q", id, i, got[i].msg, want[i])
			}
		}
	}

	// The other way: the router names the sender in Batch.Peer.
	alice.Send(frames("", "1.0", "2", "bob", "m4"), nil)
	bob.Send(frames("", "1.0", "2", "alice", "m5"), nil)
	testutil.CheckTrue(t, wait, "the router receives 2 messages", func() bool { return inbound.count() == 2 })
	for _, m := range inbound.all() {
		wantPeer := map[string]string{"m4": "alice", "m5": "bob"}[m.msg[4]]
		if m.peer != wantPeer {
			t.Errorf("message %s: Batch.Peer got %q, want %q", m.msg[4], m.peer, wantPeer)
		}
	}
	if got := r.Stats().Sent.Load(); got != 3 {
		t.Errorf("Stats.Sent: got %d, want 3", got)
	}
	if got := r.Stats().Received.Load(); got != 2 {
		t.Errorf("Stats.Received: got %d, want 2", got)
	}
	if got := r.Stats().Peers.Load(); got != 2 {
		t.Errorf("Stats.Peers: got %d, want 2", got)
	}
}

func TestRouterAnonymousIdentity(t *testing.T) {
	var inbound collector
	r := startRouter(t, Options{OnBatch: inbound.onBatch})
	var got1, got2 collector
	d1 := startDealer(t, Options{OnBatch: got1.onBatch}, r.Addr())
	d2 := startDealer(t, Options{OnBatch: got2.onBatch}, r.Addr())
	testutil.CheckTrue(t, wait, "both dealers connected", func() bool { return d1.Connected() == 1 && d2.Connected() == 1 })
	testutil.CheckTrue(t, wait, "the router has 2 peers", func() bool { return r.Stats().Peers.Load() == 2 })

	// A dealer only sends once connected, and its peer is attached on
	// the router before the router's reader reads anything from it.
	if !d1.Send(frames("from d1"), nil) || !d2.Send(frames("from d2"), nil) {
		t.Fatalf("Send returned false, want true")
	}
	testutil.CheckTrue(t, wait, "the router receives 2 messages", func() bool { return inbound.count() == 2 })
	ids := map[string]string{}
	for _, m := range inbound.all() {
		id := []byte(m.peer)
		if len(id) != 5 || id[0] != 0 {
			t.Fatalf("generated identity: got %x, want 5 bytes starting with 0", id)
		}
		ids[m.msg[0]] = m.peer
	}
	if ids["from d1"] == ids["from d2"] {
		t.Fatalf("two anonymous peers got the same identity %x", ids["from d1"])
	}
	// The generated identity routes replies.
	for _, tt := range []struct {
		from string
		c    *collector
	}{{"from d1", &got1}, {"from d2", &got2}} {
		id := []byte(ids[tt.from])
		if !r.Connected(id) {
			t.Fatalf("Connected(%x): got false, want true", id)
		}
		if !r.Send(id, frames("reply to", tt.from), nil) {
			t.Fatalf("Send to %x: got false, want true", id)
		}
		testutil.CheckFor(t, wait, func() error {
			if tt.c.has("reply to", tt.from) {
				return nil
			}
			return fmt.Errorf("the reply to %q arrives", tt.from)
		})
	}
}

func TestRouterRefusesIdentity(t *testing.T) {
	tests := []struct {
		name string
		id   string
	}{
		{name: "duplicate identity", id: "dup"},
		{name: "reserved identity starting with a zero byte", id: "\x00dup"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var inbound collector
			r := startRouter(t, Options{OnBatch: inbound.onBatch})
			var firstGot collector
			first := startDealer(t, Options{Identity: []byte("dup"), OnBatch: firstGot.onBatch}, r.Addr())
			testutil.CheckTrue(t, wait, "the first peer connected", func() bool { return r.Connected([]byte("dup")) })

			second := dialRaw(t, r.Addr(), zmq4.Dealer, tt.id, 0)
			waitClosed(t, second.conn)
			if got := r.Stats().Refused.Load(); got != 1 {
				t.Errorf("Stats.Refused: got %d, want 1", got)
			}
			if got := r.Stats().Peers.Load(); got != 1 {
				t.Errorf("Stats.Peers: got %d, want 1", got)
			}

			// The first one keeps working, both ways.
			if !r.Send([]byte("dup"), frames("still there?"), nil) {
				t.Fatalf("Send to the first peer: got false, want true")
			}
			testutil.CheckTrue(t, wait, "the first peer receives", func() bool { return firstGot.has("still there?") })
			first.Send(frames("yes"), nil)
			testutil.CheckTrue(t, wait, "the router receives from the first peer", func() bool { return inbound.has("yes") })
			if got := inbound.all()[0].peer; got != "dup" {
				t.Errorf("Batch.Peer: got %q, want %q", got, "dup")
			}
		})
	}
}

func TestRouterSendUnknownIdentity(t *testing.T) {
	r := startRouter(t, Options{})
	tests := []struct {
		name string
		id   []byte
	}{
		{name: "never connected", id: []byte("nobody")},
		{name: "empty", id: nil},
		{name: "generated form", id: []byte{0, 0, 0, 0, 1}},
	}
	for i, tt := range tests {
		if r.Send(tt.id, frames("x"), nil) {
			t.Errorf("%s: Send got true, want false", tt.name)
		}
		if got, want := r.Stats().DroppedUnknownIdentity.Load(), uint64(i+1); got != want {
			t.Errorf("%s: DroppedUnknownIdentity got %d, want %d", tt.name, got, want)
		}
	}
	if got := r.Stats().Sent.Load(); got != 0 {
		t.Errorf("Stats.Sent: got %d, want 0", got)
	}
}

// TestRouterHWM: a peer that never reads fills its socket buffers, then
// its queue; sends to it are refused and counted, one by one, and a healthy
// peer of the same router gets everything.
func TestRouterHWM(t *testing.T) {
	const hwm = 10
	r := startRouter(t, Options{HWM: hwm})
	var healthyGot collector
	startDealer(t, Options{Identity: []byte("healthy"), OnBatch: healthyGot.onBatch}, r.Addr())
	dialRaw(t, r.Addr(), zmq4.Dealer, "slow", 4096) // never read
	testutil.CheckTrue(t, wait, "both peers connected", func() bool { return r.Connected([]byte("slow")) && r.Connected([]byte("healthy")) })

	big := bytes.Repeat([]byte("x"), 64<<10)
	var accepted, refused uint64
	for refused < 20 {
		if r.Send([]byte("slow"), [][]byte{big}, nil) {
			accepted++
		} else {
			refused++
		}
		if accepted*uint64(len(big)) > 512<<20 {
			t.Fatalf("the slow peer took %d MiB without reaching its high-water mark", accepted*uint64(len(big))>>20)
		}
	}
	// The slow peer is stuck; the healthy one is served meanwhile.
	const healthyMsgs = 30
	for i := range healthyMsgs {
		if r.Send([]byte("slow"), [][]byte{big}, nil) {
			accepted++
		} else {
			refused++
		}
		if !r.Send([]byte("healthy"), frames("h", string(rune('a'+i))), nil) {
			t.Fatalf("Send to the healthy peer %d: got false, want true", i)
		}
		testutil.CheckFor(t, wait, func() error {
			if healthyGot.count() == i+1 {
				return nil
			}
			return fmt.Errorf("the healthy peer receives message %d", i)
		})
	}
	for i, m := range healthyGot.all() {
		if want := []string{"h", string(rune('a' + i))}; !slices.Equal(m.msg, want) {
			t.Errorf("healthy message %d: got %q, want %q", i, m.msg, want)
		}
	}
	st := r.Stats()
	if got := st.DroppedHWM.Load(); got != refused {
		t.Errorf("DroppedHWM: got %d, want %d (the sends that returned false)", got, refused)
	}
	if got, want := st.Sent.Load(), accepted+healthyMsgs; got != want {
		t.Errorf("Sent: got %d, want %d", got, want)
	}
	if got := st.DroppedUnknownIdentity.Load(); got != 0 {
		t.Errorf("DroppedUnknownIdentity: got %d, want 0", got)
	}
	t.Logf("slow peer: %d accepted (%d MiB), %d refused", accepted, accepted*uint64(len(big))>>20, refused)
}

// TestPingPong: a PING's context comes back in a PONG, byte for byte as
// RFC 37 says, on the binding sockets.
func TestPingPong(t *testing.T) {
	tests := []struct {
		name    string
		sock    string // "router" or "pub"
		ping    []byte // PING data: TTL then context
		wantCtx string
	}{
		{name: "router, context abc", sock: "router", ping: []byte("\x00\x0aabc"), wantCtx: "abc"},
		{name: "router, no context", sock: "router", ping: []byte("\x00\x0a"), wantCtx: ""},
		{name: "router, 16-byte context", sock: "router", ping: []byte("\x01\x00" + "0123456789abcdef"), wantCtx: "0123456789abcdef"},
		{name: "pub, context abc", sock: "pub", ping: []byte("\x00\x0aabc"), wantCtx: "abc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var peer *rawPeer
			if tt.sock == "router" {
				r := startRouter(t, Options{})
				peer = dialRaw(t, r.Addr(), zmq4.Dealer, "pinger", 0)
			} else {
				p := startPub(t, Options{})
				peer = dialRaw(t, p.Addr(), zmq4.Sub, "pinger", 0)
			}
			peer.write(appendCommand(nil, "PING", tt.ping))

			want := []byte{0x04, byte(1 + 4 + len(tt.wantCtx)), 4, 'P', 'O', 'N', 'G'}
			want = append(want, tt.wantCtx...)
			got := make([]byte, len(want))
			if err := peer.conn.SetReadDeadline(time.Now().Add(wait)); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(peer.conn, got); err != nil {
				t.Fatalf("reading the PONG: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("got %q, want %q", got, want)
			}
			// And the connection goes on: a second PING, a second PONG.
			peer.write(appendCommand(nil, "PING", tt.ping))
			res, fr, err := peer.read()
			if err != nil || res != parseCommand || fr[0] != string(want[2:]) {
				t.Fatalf("second PONG: got (%v, %q, %v), want (command, %q)", res, fr, err, want[2:])
			}
		})
	}
}

// metaProp encodes one ZMTP metadata property (RFC 23).
func metaProp(k, v string) []byte {
	b := []byte{byte(len(k))}
	b = append(b, k...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
	return append(b, v...)
}

func readyCommand(meta ...[]byte) []byte {
	return appendCommand(nil, "READY", bytes.Join(meta, nil))
}

// TestHandshakeForged: a raw client that breaks the handshake in some way
// is cut off at once (well before the handshake timeout), counted, and
// the router goes on serving others.
func TestHandshakeForged(t *testing.T) {
	greeting := zmtpGreeting(false)
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	dealerMeta := metaProp("Socket-Type", "DEALER")
	tests := []struct {
		name         string
		send         []byte
		wantBad      bool // counted in BadHandshake, connection closed
		wantOversize uint64
	}{
		{name: "valid greeting and READY (control)", send: cat(greeting, readyCommand(dealerMeta, metaProp("Identity", "ok")))},
		{name: "command header claiming 2^40 bytes", send: cat(greeting, longHeader(flagCommand, 1<<40)), wantBad: true, wantOversize: 1},
		{name: "frame header claiming 2^63 bytes", send: cat(greeting, longHeader(0, 1<<63)), wantBad: true, wantOversize: 1},
		{name: "READY property without a value length", send: cat(greeting, readyCommand(dealerMeta, []byte("\x03abc"))), wantBad: true},
		{name: "READY property value past the end", send: cat(greeting, readyCommand(dealerMeta, []byte("\x08Identity\x00\x00\x10\x00abc"))), wantBad: true},
		{name: "READY property key past the end", send: cat(greeting, readyCommand([]byte("\xc8Socket"))), wantBad: true},
		{name: "READY property value length 2^32-1", send: cat(greeting, readyCommand(dealerMeta, []byte("\x01k\xff\xff\xff\xff"))), wantBad: true},
		{name: "READY body without a name", send: cat(greeting, []byte{0x04, 0}), wantBad: true},
		{name: "command name longer than the body", send: cat(greeting, []byte{0x04, 2, 9, 'R'}), wantBad: true},
		{name: "another command than READY", send: cat(greeting, appendCommand(nil, "HELLO", nil)), wantBad: true},
		{name: "a message instead of READY", send: cat(greeting, appendMsg(nil, frames("hello"), nil)), wantBad: true},
		{name: "READY with the MORE flag", send: cat(greeting, []byte{0x05, 6, 5, 'R', 'E', 'A', 'D', 'Y'}), wantBad: true},
		{name: "incompatible socket type", send: cat(greeting, readyCommand(metaProp("Socket-Type", "PUB"))), wantBad: true},
		{name: "bad signature", send: cat([]byte{0x00}, greeting[1:]), wantBad: true},
		{name: "PLAIN mechanism", send: cat(greeting[:12], []byte("PLAIN"), make([]byte, 15), greeting[32:]), wantBad: true},
		{name: "ZMTP 2.0", send: cat(greeting[:10], []byte{2, 0}, greeting[12:]), wantBad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A long handshake timeout: the cut-off must come from the
			// check, not from the timeout.
			r := startRouter(t, Options{HandshakeTimeout: 10 * wait})
			conn := dialTCP(t, r.Addr(), 0)
			if _, err := conn.Write(tt.send); err != nil {
				t.Fatalf("write: %v", err)
			}
			st := r.Stats()
			if !tt.wantBad {
				testutil.CheckTrue(t, wait, "the control peer attached", func() bool { return st.Peers.Load() == 1 })
				if got := st.BadHandshake.Load(); got != 0 {
					t.Fatalf("BadHandshake: got %d, want 0", got)
				}
				return
			}
			waitClosed(t, conn)
			testutil.CheckTrue(t, wait, "BadHandshake counts 1", func() bool { return st.BadHandshake.Load() == 1 })
			if got := st.DroppedOversize.Load(); got != tt.wantOversize {
				t.Errorf("DroppedOversize: got %d, want %d", got, tt.wantOversize)
			}
			if got := st.Peers.Load(); got != 0 {
				t.Errorf("Peers: got %d, want 0", got)
			}
			// The router still serves.
			var got collector
			d := startDealer(t, Options{Identity: []byte("after"), OnBatch: got.onBatch}, r.Addr())
			testutil.CheckTrue(t, wait, "a good peer connects after", func() bool { return r.Connected([]byte("after")) && d.Connected() == 1 })
			r.Send([]byte("after"), frames("fine"), nil)
			testutil.CheckTrue(t, wait, "the good peer receives", func() bool { return got.has("fine") })
		})
	}
}

// TestRouterForgedFrames: after a good handshake, a peer that sends a
// forged or oversized frame is cut off before anything is allocated for
// it; the router goes on serving others.
func TestRouterForgedFrames(t *testing.T) {
	const limit = 1000
	half := string(bytes.Repeat([]byte("h"), 400))
	tests := []struct {
		name         string
		send         []byte
		wantOversize uint64
	}{
		{name: "LONG header claiming 2^62 bytes", send: longHeader(0, 1<<62), wantOversize: 1},
		{name: "LONG header claiming 2^64-1 bytes", send: longHeader(flagMore, 1<<64-1), wantOversize: 1},
		{name: "command claiming 2^40 bytes", send: longHeader(flagCommand, 1<<40), wantOversize: 1},
		{name: "one frame above the limit", send: appendMsg(nil, frames(string(bytes.Repeat([]byte("x"), limit+1))), nil), wantOversize: 1},
		{name: "message above the limit over three frames", send: appendMsg(nil, frames(half, half, half), nil), wantOversize: 1},
		{name: "reserved flag bits", send: []byte{0x10, 1, 'x'}},
		{name: "command with MORE", send: []byte{0x05, 5, 4, 'P', 'I', 'N', 'G'}},
		{name: "command inside a message", send: []byte{0x01, 1, 'a', 0x04, 5, 4, 'P', 'I', 'N', 'G'}},
		{name: "empty command", send: []byte{0x04, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var inbound collector
			r := startRouter(t, Options{MaxMessageSize: limit, OnBatch: inbound.onBatch})
			forger := dialRaw(t, r.Addr(), zmq4.Dealer, "forger", 0)
			// One good message first: the session is up.
			forger.send("good")
			testutil.CheckTrue(t, wait, "the good message arrives", func() bool { return inbound.has("good") })
			forger.write(tt.send)
			waitClosed(t, forger.conn)
			st := r.Stats()
			testutil.CheckTrue(t, wait, "the forger is detached", func() bool { return st.Peers.Load() == 0 })
			if got := st.DroppedOversize.Load(); got != tt.wantOversize {
				t.Errorf("DroppedOversize: got %d, want %d", got, tt.wantOversize)
			}
			if r.Connected([]byte("forger")) {
				t.Errorf("Connected(forger): got true, want false")
			}
			if got := inbound.count(); got != 1 {
				t.Errorf("messages received: got %d, want 1 (the good one)", got)
			}
			// The identity is free again and the router serves.
			var got collector
			startDealer(t, Options{Identity: []byte("forger"), OnBatch: got.onBatch}, r.Addr())
			testutil.CheckTrue(t, wait, "the identity is reused", func() bool { return r.Connected([]byte("forger")) })
			r.Send([]byte("forger"), frames("fine"), nil)
			testutil.CheckTrue(t, wait, "the new peer receives", func() bool { return got.has("fine") })
		})
	}
}

// TestRouterMessageSizes: up to the limit everything passes, whatever the
// frame sizes, including messages bigger than a read buffer.
func TestRouterMessageSizes(t *testing.T) {
	tests := []struct {
		name  string
		limit int64
		sizes []int // frame sizes of one message
	}{
		{name: "exactly the limit in one frame", limit: 1000, sizes: []int{1000}},
		{name: "exactly the limit over frames", limit: 1000, sizes: []int{0, 400, 600, 0}},
		{name: "bigger than a read buffer", limit: 1 << 20, sizes: []int{200 << 10}},
		{name: "many frames bigger than a read buffer", limit: 1 << 20, sizes: []int{100, 70 << 10, 0, 70 << 10, 300}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var inbound collector
			r := startRouter(t, Options{MaxMessageSize: tt.limit, OnBatch: inbound.onBatch})
			var dealerGot collector
			d := startDealer(t, Options{Identity: []byte("d"), MaxMessageSize: tt.limit, OnBatch: dealerGot.onBatch}, r.Addr())
			testutil.CheckTrue(t, wait, "connected", func() bool { return d.Connected() == 1 && r.Connected([]byte("d")) })
			msg := make([][]byte, len(tt.sizes))
			for i, n := range tt.sizes {
				msg[i] = bytes.Repeat([]byte{byte('a' + i)}, n)
			}
			want := strs(msg)
			// Three times, so that messages follow each other in a buffer.
			for range 3 {
				if !d.Send(msg, nil) || !r.Send([]byte("d"), msg, nil) {
					t.Fatalf("Send: got false, want true")
				}
			}
			for name, c := range map[string]*collector{"router": &inbound, "dealer": &dealerGot} {
				testutil.CheckFor(t, wait, func() error {
					if c.count() == 3 {
						return nil
					}
					return fmt.Errorf("the %s receives 3 messages", name)
				})
				for i, m := range c.all() {
					if !slices.Equal(m.msg, want) {
						t.Errorf("%s message %d: got frames of sizes %v, want %v", name, i, sizesOf(m.msg), tt.sizes)
					}
				}
			}
			if got := r.Stats().DroppedOversize.Load(); got != 0 {
				t.Errorf("DroppedOversize: got %d, want 0", got)
			}
		})
	}
}

func sizesOf(m []string) []int {
	out := make([]int, len(m))
	for i, f := range m {
		out[i] = len(f)
	}
	return out
}
