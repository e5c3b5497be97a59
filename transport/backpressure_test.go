package transport

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
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
	go func() {
		defer close(done)
		mr := newMsgReader(server, 1<<20, nil)
		_ = mr.run(nil, func(b *Batch) { mu.Lock(); held = append(held, b); mu.Unlock() }, func(string, []byte) error { return nil })
	}()
	heldCount := func() int { mu.Lock(); defer mu.Unlock(); return len(held) }
	eventually(t, 10*time.Second, func() bool { return heldCount() == maxBatchesInFlight }, "reader did not deliver %d batches", maxBatchesInFlight)
	// The reader is blocked: the writer cannot get further than what the
	// reader took in (one more message sits in its buffer).
	time.Sleep(50 * time.Millisecond)
	if got := heldCount(); got != maxBatchesInFlight {
		t.Fatalf("batches in flight: got %d, want at most %d", got, maxBatchesInFlight)
	}
	if w := written.Load(); w > maxBatchesInFlight+1 {
		t.Fatalf("writer got %d messages through a blocked reader, want at most %d", w, maxBatchesInFlight+1)
	}
	// Release as they come: everything arrives.
	released := 0
	eventually(t, 10*time.Second, func() bool {
		mu.Lock()
		for _, b := range held {
			b.Release()
			released++
		}
		held = held[:0]
		mu.Unlock()
		return released == n
	}, "not all batches arrived after releasing")
	wg.Wait()
	server.Close()
	<-done
}
