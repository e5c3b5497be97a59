package security

import (
	"fmt"
	"net"
)

// Mechanism is one side of a security mechanism, configured once and used
// by every connection of a socket, concurrently. Build one with
// PlainServer, PlainClient, CurveServer or CurveClient.
type Mechanism interface {
	// Name is the mechanism's name in the ZMTP greeting: "PLAIN" or "CURVE".
	Name() string
	// AsServer is the greeting's as-server flag: true for the server side.
	AsServer() bool
	// handshake runs the mechanism's commands after the greetings.
	handshake(c *cmdConn, socketType string, identity []byte, maxMessage int64) (*Session, error)
}

// Session is what a completed handshake gives.
type Session struct {
	// Conn carries the data phase: the connection itself for PLAIN, an
	// encrypting and decrypting one for CURVE. Use it, not the
	// connection given to Handshake, from here on.
	Conn net.Conn
	// Peer is the metadata the peer announced (Socket-Type, Identity...).
	Peer Metadata
	// User is who the peer authenticated as, on the server side: the
	// PLAIN user name, or the CURVE client's public key in Z85.
	User string
}

// Handshake runs the ZMTP 3.0 greeting for m and m's handshake over conn,
// as a socket of socketType (e.g. "ROUTER") with the given identity.
// maxMessage bounds one inbound message in the data phase (it sizes the
// CURVE decryption buffers); <= 0 means 16 MiB. The caller bounds the
// time with conn's deadline. Nothing is allocated for what the peer sends
// beyond a fixed bound until it is authenticated.
//
// Errors wrap ErrRefused (credentials), ErrHandshake (protocol) or the
// connection's own error.
func Handshake(conn net.Conn, m Mechanism, socketType string, identity []byte, maxMessage int64) (*Session, error) {
	if m == nil {
		return nil, fmt.Errorf("%w: no mechanism", ErrHandshake)
	}
	if maxMessage <= 0 {
		maxMessage = 16 << 20
	}
	c := &cmdConn{conn: conn}
	if err := c.exchangeGreetings(m.Name(), m.AsServer()); err != nil {
		return nil, err
	}
	return m.handshake(c, socketType, identity, maxMessage)
}

// finishMetadata parses the peer's metadata and checks its socket type.
func finishMetadata(b []byte, socketType string) (Metadata, error) {
	meta, err := parseMetadata(b)
	if err != nil {
		return nil, err
	}
	if err := checkSocketType(socketType, meta); err != nil {
		return nil, err
	}
	return meta, nil
}

// refuse sends an ERROR command with reason and returns err. The write's
// own error does not matter: the connection is closed next.
func refuse(c *cmdConn, reason string, err error) error {
	_ = c.writeCommand(commandBody("ERROR", []byte{byte(len(reason))}, []byte(reason)))
	return err
}
