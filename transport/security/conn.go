package security

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
)

// ErrTooLarge: a CURVE peer announced a MESSAGE larger than the largest
// message allowed. The connection is closed before anything is allocated
// for it.
var ErrTooLarge = errors.New("message exceeds the maximum size")

// readChunk is how much plaintext a Read decrypts ahead at most (beyond
// one frame), and the size of the ciphertext buffer in the common case.
const readChunk = 64 << 10

// keepWriteBuf is the largest sealed buffer kept between bursts.
const keepWriteBuf = 1 << 20

// boxConn is a CURVE connection in its data phase. Its user writes and
// reads plain ZMTP frames; on the wire each frame is a MESSAGE command
// (RFC 26): "\x07MESSAGE", a short nonce, and Box[flags + body](C'->S' or
// S'->C'), with flags bit 0 MORE and bit 1 COMMAND. Like libzmq, the
// MESSAGE travels as a frame of its own (no MORE flag on the wire).
//
// One goroutine may write and another read at the same time.
type boxConn struct {
	net.Conn
	sendKey, recvKey *msgKey
	maxFrame         uint64 // largest ciphertext frame body accepted

	wmu       sync.Mutex
	sendNonce uint64 // the next nonce to send; strictly increasing
	wbuf      []byte // sealed burst
	scratch   []byte // flags + body of one frame

	peerNonce uint64 // the last nonce received; the next must be larger
	rbuf      []byte // ciphertext read, not yet decrypted: rbuf[r:w]
	r, w      int
	out       []byte // decrypted frames, not yet returned: out[o:]
	o         int
	rerr      error     // sticky read error
	small     [512]byte // what a quiet connection reads into
	busy      bool      // the last read was not small: read large
}

func newBoxConn(conn net.Conn, shared *[32]byte, sendPrefix, recvPrefix string, maxMessage int64) *boxConn {
	return &boxConn{
		Conn:      conn,
		sendKey:   newMsgKey(shared, sendPrefix),
		recvKey:   newMsgKey(shared, recvPrefix),
		maxFrame:  uint64(maxMessage) + msgOverheadAll,
		sendNonce: 1,
	}
}

func (b *boxConn) nextNonce() uint64 {
	n := b.sendNonce
	b.sendNonce++
	return n
}

// Write seals p, which must hold whole ZMTP frames, into one buffer (one
// MESSAGE per frame) and writes it with one call.
func (b *boxConn) Write(p []byte) (int, error) {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	out := b.wbuf[:0]
	for pos := 0; pos < len(p); {
		flags, body, next, err := splitFrame(p, pos)
		if err != nil {
			return 0, err
		}
		pos = next
		if b.sendNonce == 0 {
			// 2^64 messages: a nonce must never repeat.
			return 0, fmt.Errorf("%w: CURVE: nonces exhausted", ErrDecrypt)
		}
		var plainFlags byte
		if flags&flagMore != 0 {
			plainFlags |= 1
		}
		if flags&flagCommand != 0 {
			plainFlags |= 2
		}
		b.scratch = append(append(b.scratch[:0], plainFlags), body...)
		size := uint64(msgHeaderSize + overhead + len(b.scratch))
		if size > 255 {
			out = append(out, flagLong)
			out = binary.BigEndian.AppendUint64(out, size)
		} else {
			out = append(out, 0, byte(size))
		}
		n := b.nextNonce()
		out = append(out, "\x07MESSAGE"...)
		out = binary.BigEndian.AppendUint64(out, n)
		out = b.sendKey.seal(out, b.scratch, n)
	}
	_, err := b.Conn.Write(out)
	if cap(out) > keepWriteBuf {
		out = nil
	}
	if cap(b.scratch) > keepWriteBuf {
		b.scratch = nil
	}
	b.wbuf = out[:0]
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// splitFrame parses the plain frame at p[pos:].
func splitFrame(p []byte, pos int) (flags byte, body []byte, next int, err error) {
	if len(p)-pos < 2 {
		return 0, nil, 0, fmt.Errorf("%w: a write must hold whole frames", ErrHandshake)
	}
	flags = p[pos]
	size, hdr := uint64(p[pos+1]), 2
	if flags&flagLong != 0 {
		if len(p)-pos < 9 {
			return 0, nil, 0, fmt.Errorf("%w: a write must hold whole frames", ErrHandshake)
		}
		size, hdr = binary.BigEndian.Uint64(p[pos+1:]), 9
	}
	if size > uint64(len(p)-pos-hdr) {
		return 0, nil, 0, fmt.Errorf("%w: a write must hold whole frames", ErrHandshake)
	}
	end := pos + hdr + int(size)
	return flags, p[pos+hdr : end], end, nil
}

// Read returns decrypted plain ZMTP frames. A MESSAGE that does not
// decrypt, or whose nonce does not increase, is ErrDecrypt; one larger
// than the maximum message is ErrTooLarge; both end the connection.
//
// A quiet connection holds no large buffer: when nothing is buffered and
// its last read was small, it waits on a small one, and takes its buffers
// from pools when bytes come; a busy one reads straight into its large
// buffer.
func (b *boxConn) Read(p []byte) (int, error) {
	for {
		if b.o < len(b.out) {
			n := copy(p, b.out[b.o:])
			b.o += n
			if b.o == len(b.out) {
				b.releaseOut()
			}
			return n, nil
		}
		if b.rerr != nil {
			b.releaseIn()
			return 0, b.rerr
		}
		need, err := b.decrypt()
		if err != nil {
			b.rerr = err
			continue
		}
		if len(b.out) > 0 {
			continue
		}
		if b.r == b.w && !b.busy {
			b.releaseIn()
			n, err := b.Conn.Read(b.small[:])
			if n > 0 {
				b.takeIn()
				b.w = copy(b.rbuf, b.small[:n])
			}
			b.busy = n == len(b.small)
			if err != nil {
				b.rerr = err
			}
			continue
		}
		if b.rbuf == nil {
			b.takeIn()
		}
		b.fill(need)
		n, err := b.Conn.Read(b.rbuf[b.w:])
		b.w += n
		b.busy = n >= len(b.small)
		if err != nil {
			b.rerr = err
		}
	}
}

var (
	cipherPool = sync.Pool{New: func() any { b := make([]byte, readChunk); return &b }}
	plainPool  = sync.Pool{New: func() any { b := make([]byte, 0, 2*readChunk); return &b }}
)

// takeIn gets a ciphertext buffer from the pool.
func (b *boxConn) takeIn() {
	b.rbuf = *cipherPool.Get().(*[]byte)
	b.r, b.w = 0, 0
}

// releaseIn returns the ciphertext buffer, which must hold nothing unread.
func (b *boxConn) releaseIn() {
	if cap(b.rbuf) == readChunk {
		buf := b.rbuf[:readChunk]
		cipherPool.Put(&buf)
	}
	b.rbuf, b.r, b.w = nil, 0, 0
}

// releaseOut returns the plaintext buffer, all of it read.
func (b *boxConn) releaseOut() {
	if cap(b.out) == 2*readChunk {
		buf := b.out[:0]
		plainPool.Put(&buf)
	}
	b.out, b.o = nil, 0
}

// fill makes room in rbuf for the need bytes of the next frame, of which
// rbuf[r:w] holds the first ones.
func (b *boxConn) fill(need int) {
	have := b.w - b.r
	switch {
	case need > len(b.rbuf):
		// A frame larger than the buffer (at most maxFrame): its own.
		nb := make([]byte, need)
		copy(nb, b.rbuf[b.r:b.w])
		b.releaseIn()
		b.rbuf, b.w = nb, have
	case len(b.rbuf)-b.r < need:
		b.w = copy(b.rbuf, b.rbuf[b.r:b.w])
		b.r = 0
	}
}

// decrypt opens the complete MESSAGE frames in rbuf into out, until out
// holds readChunk bytes. It returns how many bytes of ciphertext the next
// frame needs in all when it is incomplete.
func (b *boxConn) decrypt() (need int, err error) {
	for len(b.out) < readChunk {
		buf := b.rbuf[b.r:b.w]
		if len(buf) < 2 {
			return 2, nil
		}
		flags := buf[0]
		if flags&^(flagLong|flagCommand) != 0 {
			return 0, fmt.Errorf("%w: CURVE: frame flags 0x%02x, want a single MESSAGE frame", ErrDecrypt, flags)
		}
		size, hdr := uint64(buf[1]), 2
		if flags&flagLong != 0 {
			if len(buf) < 9 {
				return 9, nil
			}
			size, hdr = binary.BigEndian.Uint64(buf[1:9]), 9
		}
		if size > b.maxFrame {
			return 0, fmt.Errorf("%w: CURVE MESSAGE of %d bytes, limit %d", ErrTooLarge, size, b.maxFrame)
		}
		if size > uint64(len(buf)-hdr) {
			return hdr + int(size), nil
		}
		if err := b.open(buf[hdr : hdr+int(size)]); err != nil {
			return 0, err
		}
		b.r += hdr + int(size)
	}
	return 0, nil
}

// open decrypts one MESSAGE body and appends it to out as a plain frame.
func (b *boxConn) open(msg []byte) error {
	if len(msg) < msgOverheadAll || string(msg[:8]) != "\x07MESSAGE" {
		return fmt.Errorf("%w: CURVE: not a MESSAGE command", ErrDecrypt)
	}
	nonce := binary.BigEndian.Uint64(msg[8:16])
	if nonce <= b.peerNonce {
		return fmt.Errorf("%w: CURVE: nonce %d after %d (replayed or reordered)", ErrDecrypt, nonce, b.peerNonce)
	}
	ct := msg[16:]
	bodyLen := len(ct) - overhead - 1
	hdr := 2
	if bodyLen > 255 {
		hdr = 9
	}
	// Decrypt so that the flags byte lands on the last header byte, then
	// write the header over it: no copy of the body.
	start := len(b.out)
	if cap(b.out)-start < hdr+bodyLen {
		if b.out == nil && hdr+bodyLen <= 2*readChunk {
			b.out = *plainPool.Get().(*[]byte)
		} else {
			nb := make([]byte, start, max(2*cap(b.out), start+hdr+bodyLen))
			copy(nb, b.out)
			b.releaseOut()
			b.out = nb
		}
	}
	res, ok := b.recvKey.open(b.out[:start+hdr-1], ct, nonce)
	if !ok {
		return fmt.Errorf("%w: CURVE: MESSAGE %d does not open (tampered, or not from our peer)", ErrDecrypt, nonce)
	}
	pf := res[start+hdr-1]
	zf := byte(0)
	if pf&1 != 0 {
		zf |= flagMore
	}
	if pf&2 != 0 {
		zf |= flagCommand
	}
	if hdr == 9 {
		res[start] = zf | flagLong
		binary.BigEndian.PutUint64(res[start+1:], uint64(bodyLen))
	} else {
		res[start], res[start+1] = zf, byte(bodyLen)
	}
	b.out = res
	b.peerNonce = nonce
	return nil
}
