package transport

import (
	"sync"
	"sync/atomic"
)

// readBufSize is the size of a read buffer: one read brings in as many
// messages as fit, and they travel on together as one Batch.
const readBufSize = 64 << 10

var readBufPool = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}

// bigReadBufPool holds buffers of twice readBufSize, for messages a
// little larger than one read buffer (a 64 KiB payload and its
// envelope): without it each such message takes a buffer of its own
// (BenchmarkReadLargeMessages: 8.4 MB allocated per 64 such messages,
// 9 KB with it), and a peer that sends them fast to a server that never
// reads grew the proxy's RSS by 261 MiB instead of 33
// (e2e TestAttackStuckPeerMemory). Larger messages still take a buffer
// each, which the GC collects.
var bigReadBufPool = sync.Pool{New: func() any { b := make([]byte, 2*readBufSize); return &b }}

// getReadBuf is a buffer of at least size bytes: pooled up to twice
// readBufSize, else a new one.
func getReadBuf(size int) *[]byte {
	switch {
	case size <= readBufSize:
		return readBufPool.Get().(*[]byte)
	case size <= 2*readBufSize:
		return bigReadBufPool.Get().(*[]byte)
	}
	b := make([]byte, size)
	return &b
}

// putReadBuf returns a buffer from getReadBuf to its pool, if it has one.
func putReadBuf(b *[]byte) {
	switch {
	case b == nil:
	case cap(*b) == readBufSize:
		readBufPool.Put(b)
	case cap(*b) == 2*readBufSize:
		bigReadBufPool.Put(b)
	}
}

// Batch is the messages one read burst brought in from one peer. Its frames
// alias a read buffer that returns to a pool when the last holder calls
// Release, so a receiver that keeps a frame past Release must copy it.
type Batch struct {
	// Peer is the identity of the peer the messages came from.
	Peer []byte
	Msgs []Msg

	// types is what Parse found in each message's envelope, its type (0:
	// not parsed, or not a valid envelope): filled on the reader that
	// read the batch, read by its other holders through Envelope.
	types []MsgType

	frames [][]byte
	buf    *[]byte
	refs   atomic.Int32
	slot   chan struct{} // the reader's in-flight slot this batch holds, if any
}

var batchPool = sync.Pool{New: func() any { return new(Batch) }}

func newBatch(peer []byte) *Batch {
	b := batchPool.Get().(*Batch)
	b.Peer = peer
	b.refs.Store(1)
	return b
}

// Retain adds a holder: each holder calls Release once.
func (b *Batch) Retain() { b.refs.Add(1) }

// Release drops a hold; the last one recycles the buffers.
func (b *Batch) Release() {
	if b.refs.Add(-1) != 0 {
		return
	}
	putReadBuf(b.buf)
	if b.slot != nil {
		<-b.slot
	}
	clear(b.frames)
	clear(b.Msgs)
	clear(b.types)
	b.types = b.types[:0]
	b.frames, b.Msgs, b.buf, b.Peer, b.slot = b.frames[:0], b.Msgs[:0], nil, nil, nil
	batchPool.Put(b)
}

// NewBatch builds a batch from messages that the caller owns, for tests and
// for sockets that produce messages themselves.
func NewBatch(peer []byte, msgs ...Msg) *Batch {
	b := newBatch(peer)
	b.Msgs = append(b.Msgs, msgs...)
	return b
}
