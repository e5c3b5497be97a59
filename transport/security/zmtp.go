package security

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
)

// ZMTP 3 frame flags (RFC 23).
const (
	flagMore    = 0x01
	flagLong    = 0x02
	flagCommand = 0x04
)

// maxCommand bounds one handshake command: the largest legitimate one is a
// CURVE INITIATE with metadata (257 bytes plus the metadata) or a PLAIN
// HELLO (at most 518 bytes). Nothing a peer sends before it is
// authenticated makes a handshake allocate more than this, once.
const maxCommand = 8 << 10

// maxMetadata bounds the metadata a peer may send in its INITIATE or
// READY.
const maxMetadata = maxCommand - 300

const greetingLen = 64

// greeting is a ZMTP 3.0 greeting for mechanism. We announce 3.0, as
// go-zeromq does for NULL, so libzmq peers send subscriptions as messages
// (RFC 23), which the rest of the transport expects.
func greeting(mechanism string, asServer bool) []byte {
	g := make([]byte, greetingLen)
	g[0], g[9] = 0xFF, 0x7F
	g[10], g[11] = 3, 0
	copy(g[12:32], mechanism)
	if asServer {
		g[32] = 1
	}
	return g
}

// checkGreeting validates the peer's greeting against our mechanism.
func checkGreeting(g []byte, mechanism string) error {
	if g[0] != 0xFF || g[9]&1 != 1 {
		return fmt.Errorf("%w: not a ZMTP greeting", ErrHandshake)
	}
	if g[10] < 3 {
		return fmt.Errorf("%w: ZMTP version %d.%d, want 3.x", ErrHandshake, g[10], g[11])
	}
	mech := strings.TrimRight(string(g[12:32]), "\x00")
	if mech != mechanism {
		return fmt.Errorf("%w: peer's mechanism is %q, ours is %q", ErrRefused, printable(mech), mechanism)
	}
	return nil
}

// cmdConn reads and writes handshake commands on a connection, with one
// fixed buffer: a command larger than maxCommand is refused from its
// header, before anything is read into memory for it.
type cmdConn struct {
	conn net.Conn
	buf  [maxCommand + 9]byte
}

// exchangeGreetings sends ours and reads the peer's.
func (c *cmdConn) exchangeGreetings(mechanism string, asServer bool) error {
	if _, err := c.conn.Write(greeting(mechanism, asServer)); err != nil {
		return err
	}
	g := c.buf[:greetingLen]
	// The signature's first byte alone tells a ZMTP peer from anything
	// else; read the rest only if it is one.
	if _, err := io.ReadFull(c.conn, g[:1]); err != nil {
		return err
	}
	if g[0] != 0xFF {
		return fmt.Errorf("%w: not a ZMTP greeting", ErrHandshake)
	}
	if _, err := io.ReadFull(c.conn, g[1:]); err != nil {
		return err
	}
	return checkGreeting(g, mechanism)
}

// readCommand reads one command frame. The returned body aliases c's
// buffer and is valid until the next read.
func (c *cmdConn) readCommand() ([]byte, error) {
	h := c.buf[:9]
	if _, err := io.ReadFull(c.conn, h[:2]); err != nil {
		return nil, err
	}
	flags := h[0]
	if flags&flagCommand == 0 || flags&flagMore != 0 || flags&^(flagMore|flagLong|flagCommand) != 0 {
		return nil, fmt.Errorf("%w: expected a command frame, got flags 0x%02x", ErrHandshake, flags)
	}
	size := uint64(h[1])
	if flags&flagLong != 0 {
		if _, err := io.ReadFull(c.conn, h[2:9]); err != nil {
			return nil, err
		}
		size = binary.BigEndian.Uint64(h[1:9])
	}
	if size > maxCommand {
		return nil, fmt.Errorf("%w: handshake command of %d bytes, limit %d", ErrHandshake, size, maxCommand)
	}
	body := c.buf[:size]
	if _, err := io.ReadFull(c.conn, body); err != nil {
		return nil, err
	}
	return body, nil
}

// writeCommand writes the command frame holding body.
func (c *cmdConn) writeCommand(body []byte) error {
	_, err := c.conn.Write(appendCommandFrame(nil, body))
	return err
}

func appendCommandFrame(dst, body []byte) []byte { return AppendFrame(dst, flagCommand, body) }

// AppendFrame appends one ZMTP 3 frame (RFC 23), header and body, to dst:
// flags (MORE, COMMAND) with LONG added for a body over 255 bytes. The
// transport's messages and the handshakes' commands are both written
// with it.
func AppendFrame(dst []byte, flags byte, body []byte) []byte {
	if n := len(body); n > 255 {
		dst = append(dst, flags|flagLong)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	} else {
		dst = append(dst, flags, byte(n))
	}
	return append(dst, body...)
}

// command splits a command body into its name and data.
func command(body []byte) (name string, data []byte, err error) {
	if len(body) < 1 || int(body[0]) > len(body)-1 || body[0] == 0 {
		return "", nil, fmt.Errorf("%w: truncated command", ErrHandshake)
	}
	n := int(body[0])
	return string(body[1 : 1+n]), body[1+n:], nil
}

// commandBody is name-length, name, data.
func commandBody(name string, data ...[]byte) []byte {
	n := 1 + len(name)
	for _, d := range data {
		n += len(d)
	}
	b := make([]byte, 0, n)
	b = append(b, byte(len(name)))
	b = append(b, name...)
	for _, d := range data {
		b = append(b, d...)
	}
	return b
}

// errorReason reads an ERROR command's reason.
func errorReason(data []byte) string {
	if len(data) < 1 || int(data[0]) > len(data)-1 {
		return "(malformed ERROR)"
	}
	return printable(string(data[1 : 1+int(data[0])]))
}

// Metadata is the properties a peer announces in its READY or INITIATE
// (RFC 23): Socket-Type, Identity and any others.
type Metadata map[string]string

// Canonical names of the properties the transport looks at; a peer's
// names are matched without regard to case, as libzmq does.
const (
	PropSocketType = "Socket-Type"
	PropIdentity   = "Identity"
)

// appendMetadata encodes properties: name length (1 byte), name, value
// length (4 bytes, big endian), value. Names are written in a fixed
// order so the encoding is deterministic.
func appendMetadata(dst []byte, socketType string, identity []byte) []byte {
	dst = appendProp(dst, PropSocketType, []byte(socketType))
	switch socketType {
	case "DEALER", "ROUTER", "REQ":
		// libzmq sends Identity only for these types.
		dst = appendProp(dst, PropIdentity, identity)
	}
	return dst
}

func appendProp(dst []byte, name string, value []byte) []byte {
	dst = append(dst, byte(len(name)))
	dst = append(dst, name...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(value)))
	return append(dst, value...)
}

// parseMetadata decodes properties; anything that does not parse exactly
// is an error.
func parseMetadata(b []byte) (Metadata, error) {
	if len(b) > maxMetadata {
		return nil, fmt.Errorf("%w: metadata of %d bytes, limit %d", ErrHandshake, len(b), maxMetadata)
	}
	m := make(Metadata)
	for len(b) > 0 {
		n := int(b[0])
		if n == 0 || len(b) < 1+n+4 {
			return nil, fmt.Errorf("%w: truncated metadata", ErrHandshake)
		}
		name := string(b[1 : 1+n])
		vlen := binary.BigEndian.Uint32(b[1+n:])
		b = b[1+n+4:]
		if uint64(vlen) > uint64(len(b)) {
			return nil, fmt.Errorf("%w: truncated metadata value", ErrHandshake)
		}
		switch {
		case strings.EqualFold(name, PropSocketType):
			name = PropSocketType
		case strings.EqualFold(name, PropIdentity):
			name = PropIdentity
		}
		m[name] = string(b[:vlen])
		b = b[vlen:]
	}
	if len(m[PropIdentity]) > 255 {
		return nil, fmt.Errorf("%w: identity of %d bytes, limit 255", ErrHandshake, len(m[PropIdentity]))
	}
	return m, nil
}

// compatible lists, for each socket type, the peer types it may talk to
// (RFC 23 and the socket RFCs), as libzmq checks them.
var compatible = map[string][]string{
	"REQ":    {"REP", "ROUTER"},
	"REP":    {"REQ", "DEALER"},
	"DEALER": {"REP", "DEALER", "ROUTER"},
	"ROUTER": {"REQ", "DEALER", "ROUTER"},
	"PUB":    {"SUB", "XSUB"},
	"XPUB":   {"SUB", "XSUB"},
	"SUB":    {"PUB", "XPUB"},
	"XSUB":   {"PUB", "XPUB"},
	"PUSH":   {"PULL"},
	"PULL":   {"PUSH"},
	"PAIR":   {"PAIR"},
}

func checkSocketType(ours string, meta Metadata) error {
	peer := meta[PropSocketType]
	for _, t := range compatible[ours] {
		if t == peer {
			return nil
		}
	}
	return fmt.Errorf("%w: a %s socket cannot talk to a %q peer", ErrHandshake, ours, printable(peer))
}

// printable renders peer-supplied text for errors and logs.
func printable(s string) string {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return fmt.Sprintf("0x%x", s)
		}
	}
	return s
}
