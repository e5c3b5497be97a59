package transport

import (
	"net"
)

// maxBatchesInFlight bounds the batches of one connection that are handed
// on and not yet released. A reader that reaches it stops reading until a
// batch is released, so a peer that sends faster than the proxy forwards
// is held back by TCP (as libzmq's receive high-water mark does) instead
// of growing the mailboxes: a connection holds at most this many read
// buffers.
const maxBatchesInFlight = 16

// msgReader reads ZMTP frames from one connection into large buffers and
// hands them on in batches: one Read brings in as many messages as are on
// the wire, and they leave as one Batch, without a copy.
type msgReader struct {
	conn   net.Conn
	maxMsg int64
	buf    *[]byte
	r, w   int
	ends   []int         // frame index where each message of the batch ends
	slots  chan struct{} // one token per batch in flight
	done   <-chan struct{}
}

// newMsgReader reads conn; it stops waiting for a free in-flight slot when
// done is closed.
func newMsgReader(conn net.Conn, maxMsg int64, done <-chan struct{}) *msgReader {
	return &msgReader{conn: conn, maxMsg: maxMsg, buf: readBufPool.Get().(*[]byte),
		slots: make(chan struct{}, maxBatchesInFlight), done: done}
}

func putReadBuf(b *[]byte) {
	if b != nil && cap(*b) == readBufSize {
		readBufPool.Put(b)
	}
}

// renew moves the unparsed rest of the buffer into a new buffer of at least
// size bytes. The old buffer is released only if release is set (otherwise
// a batch owns it).
func (mr *msgReader) renew(size int, release bool) {
	var nb *[]byte
	if size <= readBufSize {
		nb = readBufPool.Get().(*[]byte)
	} else {
		b := make([]byte, size)
		nb = &b
	}
	mr.w = copy(*nb, (*mr.buf)[mr.r:mr.w])
	mr.r = 0
	if release {
		putReadBuf(mr.buf)
	}
	mr.buf = nb
}

// grow is the size of the next buffer when have bytes of an incomplete
// message (which needs need bytes in all) are in hand: a pooled buffer
// while that is enough, else twice what has arrived, capped at need. A
// peer that declares a large frame and sends little of it costs little;
// one that sends it all costs at most twice what it sent.
func (mr *msgReader) grow(need, have int) int {
	if have < readBufSize {
		return readBufSize
	}
	return min(need, 2*have)
}

// run reads until the connection fails and returns why. For each burst it
// calls onBatch with the messages (the callee takes the batch's one hold)
// and onCommand for each command frame, in wire order.
func (mr *msgReader) run(peer []byte, onBatch func(*Batch), onCommand func(name string, data []byte) error) error {
	defer func() { putReadBuf(mr.buf); mr.buf = nil }()
	batch := newBatch(peer)
	defer func() { batch.Release() }()
	for {
		need := 0
		for {
			res, frames, n, nd, err := parseMsg((*mr.buf)[mr.r:mr.w], batch.frames, mr.maxMsg)
			if err != nil {
				return err
			}
			if res == parseIncomplete {
				need = nd
				break
			}
			mr.r += n
			if res == parseCommand {
				name, data, err := parseCommandBody(frames[len(frames)-1])
				if err == nil {
					err = onCommand(name, data)
				}
				if err != nil {
					return err
				}
				continue
			}
			batch.frames = frames
			mr.ends = append(mr.ends, len(frames))
		}
		if len(mr.ends) > 0 {
			i := 0
			for _, j := range mr.ends {
				batch.Msgs = append(batch.Msgs, batch.frames[i:j:j])
				i = j
			}
			mr.ends = mr.ends[:0]
			// The buffer goes with the batch: move the partial rest out
			// first, since the batch may be released (and its buffer reused)
			// as soon as it is handed on.
			batch.buf = mr.buf
			mr.renew(mr.grow(need, mr.w-mr.r), false)
			select {
			case mr.slots <- struct{}{}:
			case <-mr.done:
				return net.ErrClosed
			}
			batch.slot = mr.slots
			onBatch(batch)
			batch = newBatch(peer)
		} else {
			if mr.r > 0 {
				mr.w = copy(*mr.buf, (*mr.buf)[mr.r:mr.w])
				mr.r = 0
			}
			if mr.w == len(*mr.buf) {
				// Full, and the message needs more: grow, at most doubling
				// what has arrived, never to what the peer declared.
				mr.renew(mr.grow(need, mr.w), true)
			}
		}
		n, err := mr.conn.Read((*mr.buf)[mr.w:])
		mr.w += n
		if err != nil {
			return err
		}
	}
}
