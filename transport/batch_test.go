package transport

import (
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"

	"github.com/go-zeromq/zmq4"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
)

func TestBatchRelease(t *testing.T) {
	tests := []struct {
		name    string
		retains int
	}{
		{name: "one holder", retains: 0},
		{name: "two holders", retains: 1},
		{name: "four holders", retains: 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buf := readBufPool.Get().(*[]byte)
			n := copy(*buf, "hello world")
			b := newBatch([]byte("peer"))
			b.buf = buf
			b.frames = append(b.frames, (*buf)[:5], (*buf)[6:n])
			b.Msgs = append(b.Msgs, Msg(b.frames[:1]), Msg(b.frames[1:2]))
			for range tt.retains {
				b.Retain()
			}
			for i := range tt.retains {
				b.Release()
				if got := strs(b.Msgs[0]); len(b.Msgs) != 2 || !slices.Equal(got, []string{"hello"}) {
					t.Fatalf("after %d of %d releases: got %d messages, first %q; want 2, [hello]", i+1, tt.retains+1, len(b.Msgs), got)
				}
				if b.buf != buf || string(b.Peer) != "peer" {
					t.Fatalf("after %d of %d releases: the buffer or the peer is gone", i+1, tt.retains+1)
				}
			}
			b.Release()
			// The last holder gave everything back.
			if b.buf != nil || b.Peer != nil || len(b.Msgs) != 0 || len(b.frames) != 0 {
				t.Fatalf("after the last release: buf %v, peer %q, %d messages, %d frames; want all empty",
					b.buf != nil, b.Peer, len(b.Msgs), len(b.frames))
			}
		})
	}
}

func TestNewBatch(t *testing.T) {
	b := NewBatch([]byte("p"), Msg(frames("a", "b")), Msg(frames("c")))
	if got := len(b.Msgs); got != 2 {
		t.Fatalf("messages: got %d, want 2", got)
	}
	if got := strs(b.Msgs[1]); !slices.Equal(got, []string{"c"}) {
		t.Fatalf("second message: got %q, want [c]", got)
	}
	b.Release()
}

// TestBurstOneBatch: 1000 small messages that arrive in one read (one
// Write on a net.Pipe is one Read) leave the reader as exactly one batch,
// in order; over TCP, the same burst arrives complete and in order.
func TestBurstOneBatch(t *testing.T) {
	const n = 1000
	var wire []byte
	for i := range n {
		wire = appendMsg(wire, frames("", fmt.Sprint(i)), nil)
	}
	if len(wire) > readBufSize {
		t.Fatalf("the burst is %d bytes, more than one read buffer (%d)", len(wire), readBufSize)
	}
	a, b := net.Pipe()
	var batches [][]string
	done := make(chan error, 1)
	go func() {
		mr := newMsgReader(a, 1<<20, nil)
		done <- mr.run([]byte("burst"), func(bt *Batch) {
			var msgs []string
			for _, m := range bt.Msgs {
				msgs = append(msgs, string(m[1]))
			}
			batches = append(batches, msgs)
			bt.Release()
		}, func(string, []byte) error { return nil })
	}()
	if _, err := b.Write(wire); err != nil {
		t.Fatal(err)
	}
	b.Close()
	<-done
	a.Close()
	if len(batches) != 1 || len(batches[0]) != n {
		t.Fatalf("got %d batches (first of %d messages), want 1 of %d", len(batches), len(batches[0]), n)
	}
	for i, m := range batches[0] {
		if m != fmt.Sprint(i) {
			t.Fatalf("message %d: got %q, want %q", i, m, fmt.Sprint(i))
		}
	}

	var got collector
	r := startRouter(t, Options{OnBatch: got.onBatch})
	raw := dialRaw(t, r.Addr(), zmq4.Dealer, "burst", 0)
	raw.write(wire)
	testutil.CheckFor(t, wait, func() error {
		if c := got.count(); c != n {
			return fmt.Errorf("messages over TCP: got %d, want %d", c, n)
		}
		return nil
	})
	for i, m := range got.all() {
		if want := []string{"", fmt.Sprint(i)}; !slices.Equal(m.msg, want) || m.peer != "burst" {
			t.Fatalf("message %d: got %q from %q, want %q from burst", i, m.msg, m.peer, want)
		}
	}
}

// TestDealerBurstInOrder: a burst of Sends arrives complete and in order.
func TestDealerBurstInOrder(t *testing.T) {
	var got collector
	r := startRouter(t, Options{OnBatch: got.onBatch})
	d := startDealer(t, Options{Identity: []byte("d"), HWM: 2000}, r.Addr())
	testutil.CheckTrue(t, wait, "connected", func() bool { return d.Connected() == 1 })
	const n = 1000
	sendInOrder(t, d, &got, n)
	t.Logf("%d messages in %d batches", n, got.batchCount())
}

// TestHeldBatchesStayIntact: a receiver may keep batches (Retain, then
// Release later) while the reader goes on: the frames it holds are not
// overwritten by later reads. Each batch is checked only when it is
// released, several reads after it arrived (the reader allows up to
// maxBatchesInFlight held batches per connection).
func TestHeldBatchesStayIntact(t *testing.T) {
	const n = 3000
	pad := string(make([]byte, 97))
	var (
		mu      sync.Mutex
		held    []*Batch
		next    int // index of the next message to check
		batches int
		bad     error
	)
	check := func(b *Batch) {
		for _, m := range b.Msgs {
			if want := []string{fmt.Sprintf("%05d", next), pad}; bad == nil && (!slices.Equal(strs(m), want) || string(b.Peer) != "d") {
				bad = fmt.Errorf("held message %d from %q: got %q, want %q", next, b.Peer, strs(m)[0], want[0])
			}
			next++
		}
		b.Release()
		b.Release()
	}
	r := startRouter(t, Options{OnBatch: func(b *Batch) {
		b.Retain() // a second holder, as when a batch goes to two actors
		mu.Lock()
		defer mu.Unlock()
		batches++
		held = append(held, b)
		if len(held) > maxBatchesInFlight/2 {
			check(held[0])
			held = held[1:]
		}
	}})
	d := startDealer(t, Options{Identity: []byte("d"), HWM: 10000}, r.Addr())
	testutil.CheckTrue(t, wait, "connected", func() bool { return d.Connected() == 1 })

	// Enough bytes for many read buffers, with messages across their ends.
	for i := range n {
		if !d.Send(frames(fmt.Sprintf("%05d", i), pad), nil) {
			t.Fatalf("Send %d: got false, want true", i)
		}
	}
	testutil.CheckFor(t, wait, func() error {
		mu.Lock()
		defer mu.Unlock()
		held0 := 0
		for _, b := range held {
			held0 += len(b.Msgs)
		}
		if got := next + held0; got != n {
			return fmt.Errorf("messages arrived: got %d, want %d", got, n)
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	for _, b := range held {
		check(b)
	}
	if bad != nil {
		t.Fatal(bad)
	}
	t.Logf("%d messages in %d batches, checked after later reads", n, batches)
}
