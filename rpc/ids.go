package rpc

import (
	"github.com/google/uuid"

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

// newID makes a message id with the flags; 0 makes a version 4 UUID, as
// oslo.messaging does.
func newID(flags byte) string {
	u := uuid.New()
	if flags != 0 {
		u[6] = 0x80 | flags&0x0f
	}
	return u.String()
}
