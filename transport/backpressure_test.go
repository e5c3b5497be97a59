package transport

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
)

// A receiver that does not keep up (its batches are not released) stops
// the reader after maxBatchesInFlight batches: the peer is held back by
// TCP instead of the proxy's memory growing. Releasing lets it go on.
func TestReaderStopsAtBatchesInFlight(t *testing.T) {
	client, server := net.Pipe()
	const n = 100
	var written atomic.Int32
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer client.Close()
		for range n {
			// net.Pipe delivers each Write to one Read: one batch each.
			if _, err := client.Write(appendMsg(nil, [][]byte{[]byte("x")}, nil)); err != nil {
				return
			}
			written.Add(1)
		}
	}()
	var mu sync.Mutex
	var held []*Batch
	done := make(chan struct{})
	mr := newMsgReader(server, 1<<20, nil)
	go func() {
		defer close(done)
		_ = mr.run(nil, func(b *Batch) { mu.Lock(); held = append(held, b); mu.Unlock() }, func(string, []byte) error { return nil })
	}()
	heldCount := func() int { mu.Lock(); defer mu.Unlock(); return len(held) }
	// The reader takes in one message past the limit and then needs a slot
	// to hand it on: every slot is taken, so it cannot, and it reads no
	// more (on a net.Pipe the writer's next Write waits for that read).
	testutil.CheckFor(t, 10*time.Second, func() error {
		if h, w := heldCount(), written.Load(); h != maxBatchesInFlight || w != maxBatchesInFlight+1 {
			return fmt.Errorf("got %d batches held and %d messages written, want %d and %d", h, w, maxBatchesInFlight, maxBatchesInFlight+1)
		}
		return nil
	})
	if n := len(mr.slots); n != cap(mr.slots) {
		t.Fatalf("in-flight slots taken: got %d, want all %d", n, cap(mr.slots))
	}
	// Release as they come: everything arrives.
	released := 0
	testutil.CheckFor(t, 10*time.Second, func() error {
		mu.Lock()
		for _, b := range held {
			b.Release()
			released++
		}
		held = held[:0]
		mu.Unlock()
		if released == n {
			return nil
		}
		return fmt.Errorf("batches released: got %d, want all %d", released, n)
	})
	wg.Wait()
	server.Close()
	<-done
}
