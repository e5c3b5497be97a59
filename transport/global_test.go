package transport

import (
	"bytes"
	"fmt"
	"net"
	"sync"
	"testing"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
)

// stuckConn is a connection whose writes block until it is closed: a
// peer that never reads, once the kernel's buffers are full.
type stuckConn struct {
	net.Conn // nil: only Write and Close are used
	closed   chan struct{}
	once     sync.Once
}

func (c *stuckConn) Write([]byte) (int, error) { <-c.closed; return 0, net.ErrClosed }
func (c *stuckConn) Close() error              { c.once.Do(func() { close(c.closed) }); return nil }

// The batch the writer is writing counts toward HWMBytes: a peer that
// never reads holds its writer in a write, and the queue behind it stops
// at what the batch leaves of the mark, not at a second HWMBytes.
func TestHWMBytesCountsBatchBeingWritten(t *testing.T) {
	const hwmBytes = 1 << 20
	conn := &stuckConn{closed: make(chan struct{})}
	p := &peer{conn: conn, hwm: 1 << 20, hwmBytes: hwmBytes, wake: make(chan struct{}, 1), done: make(chan struct{})}
	writerDone := make(chan struct{})
	go func() { defer close(writerDone); _ = p.writeLoop() }()
	defer func() { p.shutdown(); <-writerDone }()

	first := bytes.Repeat([]byte("f"), hwmBytes/2)
	if !p.send([][]byte{first}, nil) {
		t.Fatal("the first message: refused, want queued")
	}
	testutil.CheckFor(t, wait, func() error {
		p.mu.Lock()
		defer p.mu.Unlock()
		if !p.writing || p.inflight == 0 {
			return fmt.Errorf("the writer is stuck in a write (writing %v, inflight %d)", p.writing, p.inflight)
		}
		return nil
	})
	big := bytes.Repeat([]byte("x"), 64<<10)
	queued := 0
	for p.send([][]byte{big}, nil) {
		if queued++; queued > 1000 {
			t.Fatal("the stuck peer took 64 MiB without reaching its high-water mark")
		}
	}
	p.mu.Lock()
	held, inflight := len(p.buf)+p.inflight, p.inflight
	p.mu.Unlock()
	if held > hwmBytes {
		t.Fatalf("held for the stuck peer: %d bytes (%d being written), want at most %d", held, inflight, hwmBytes)
	}
	if want := (hwmBytes - inflight) / (len(big) + 9); queued != want {
		t.Fatalf("queued behind the write: %d messages, want %d", queued, want)
	}
}

// The subscribers of one PUB hold at most Options.MaxTopics prefixes and
// Options.MaxTopicBytes bytes of them together: past either, each
// subscriber's own limit notwithstanding, a subscription is ignored and
// counted; a subscriber that leaves gives its share back.
func TestPubSubscriptionBudget(t *testing.T) {
	for _, tc := range []struct {
		name             string
		topics, bytes    int
		perSub, topicLen int
	}{
		{"topics", 50, 1 << 20, 20, 10},
		{"bytes", 1000, 500, 20, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := NewPub(testOptions(Options{MaxTopics: tc.topics, MaxTopicBytes: tc.bytes}))
			defer p.Close()
			subs := make([]*peer, 5)
			for i := range subs {
				subs[i] = &peer{id: []byte{byte('a' + i)}}
				var msgs [][]byte
				for j := range tc.perSub {
					msgs = append(msgs, append([]byte{1}, fmt.Sprintf("%d-%0*d", i, tc.topicLen-2, j)...))
				}
				p.update(subs[i], msgs...)
			}
			wantTopics := min(tc.topics, tc.bytes/tc.topicLen, 5*tc.perSub)
			held := 0
			p.trie.Load().walk(nil, func([]byte, *peer) { held++ })
			if held != wantTopics || p.budget.topics != wantTopics || p.budget.bytes != wantTopics*tc.topicLen {
				t.Fatalf("held: %d prefixes in the trie, budget %d prefixes, %d bytes; want %d, %d",
					held, p.budget.topics, p.budget.bytes, wantTopics, wantTopics*tc.topicLen)
			}
			if got, want := p.Stats().RefusedTopics.Load(), uint64(5-wantTopics/tc.perSub); got != want {
				t.Fatalf("RefusedTopics: got %d, want %d (one per refusing update)", got, want)
			}
			for _, s := range subs {
				p.detach(s)
			}
			if p.trie.Load() != nil || p.budget.topics != 0 || p.budget.bytes != 0 {
				t.Fatalf("after every subscriber left: trie %v, budget %+v; want empty", p.trie.Load(), p.budget)
			}
			late := &peer{id: []byte("late")}
			p.update(late, []byte("\x01late"))
			if p.budget.topics != 1 {
				t.Fatalf("a subscriber after the others left: budget %+v, want 1 prefix", p.budget)
			}
		})
	}
}
