package transport

import (
	"sync"
	"sync/atomic"
)

// readBufSize is the size of a read buffer: one read brings in as many
// messages as fit, and they travel on together as one Batch.
const readBufSize = 64 << 10

var readBufPool = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}

// Batch is the messages one read burst brought in from one peer. Its frames
// alias a read buffer that returns to a pool when the last holder calls
// Release, so a receiver that keeps a frame past Release must copy it.
type Batch struct {
	// Peer is the identity of the peer the messages came from.
	Peer []byte
	Msgs []Msg

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
	if b.buf != nil && cap(*b.buf) == readBufSize {
		readBufPool.Put(b.buf)
	}
	if b.slot != nil {
		<-b.slot
	}
	clear(b.frames)
	clear(b.Msgs)
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
