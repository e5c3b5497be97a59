package rpc

import (
	"crypto/rand"
	"sync/atomic"

	"github.com/zmq-proxy/zmq-proxy/transport"
)

// Message ids. oslo.messaging's are random (version 4) UUIDs, and so are
// this package's when the sender asks for nothing. A sender that asks
// for something says so in the id itself, which every peer passes on
// untouched: it makes the id a version 8 UUID (RFC 9562's version for
// vendor-specific layouts) whose next hex digit holds the flags below.
// oslo.messaging and libzmq peers never make such ids, so they never see
// an ACK or a NACK they did not ask for (docs/protocol.md, "Asking for
// ACKs and NACKs").
//
//	xxxxxxxx-xxxx-8Fxx-yxxx-xxxxxxxxxxxx   F = flags, y = 8, 9, a or b
const (
	// idAck: the sender wants an ACK for this CALL or CAST, whatever the
	// server's Acks setting (a client with ClientConfig.Acks).
	idAck = transport.IDFlagAck
	// idNack: the sender wants a NACK from a proxy that cannot deliver
	// this message to its routing key (not connected there).
	idNack = transport.IDFlagNack
)

// ids makes a client's message ids without a read of crypto/rand each
// (and without a process-wide pool): 16 random bytes drawn once, whose
// last 6 bytes are a counter's start. Id n is those bytes with the
// counter advanced n times, its version and variant set; a receiver
// remembers ids with their sender (seen), so one client's ids need only
// differ from one another, which they do for 2^48 messages, and from the
// ids of a client that reuses its identity, which the 74 random bits of
// the rest make as unlikely as for random UUIDs.
type ids struct {
	base [16]byte
	n    atomic.Uint64
}

func newIDs() *ids {
	g := &ids{}
	_, _ = rand.Read(g.base[:]) // never fails (crypto/rand)
	return g
}

const hexDigits = "0123456789abcdef"

// next makes a message id with the flags; 0 makes a version 4 UUID, as
// oslo.messaging does.
func (g *ids) next(flags byte) string {
	var s [idLen]byte
	g.put(s[:], flags)
	return string(s[:])
}

// idLen is the length of a message id: a UUID's 36 characters.
const idLen = 36

// nextAfter makes a message id in the idLen bytes past the end of buf
// (buf's capacity holds them) and returns it: the message's payload and
// its id in one allocation. Those bytes are never written again.
func (g *ids) nextAfter(buf []byte, flags byte) string {
	b := buf[len(buf) : len(buf)+idLen]
	g.put(b, flags)
	return bytesString(b)
}

// put writes the next id with the flags into s[:idLen].
func (g *ids) put(s []byte, flags byte) {
	u := g.base
	n := g.n.Add(1)
	// The counter: the last 6 bytes, plus n, carried within them.
	var low uint64
	for _, b := range u[10:] {
		low = low<<8 | uint64(b)
	}
	low += n
	for i := 15; i >= 10; i-- {
		u[i] = byte(low)
		low >>= 8
	}
	u[6] = 0x40 | u[6]&0x0f // version 4
	if flags != 0 {
		u[6] = 0x80 | flags&0x0f // version 8, flags
	}
	u[8] = 0x80 | u[8]&0x3f // variant 10 (RFC 9562)
	j := 0
	for i, b := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			s[j] = '-'
			j++
		}
		s[j], s[j+1] = hexDigits[b>>4], hexDigits[b&0x0f]
		j += 2
	}
}
