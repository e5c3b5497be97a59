package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/go-zeromq/zmq4"
	"github.com/go-zeromq/zmq4/security/null"
)

// maxHandshakeFrame bounds a frame during the handshake (a READY command
// with the peer's metadata is a few dozen bytes).
const maxHandshakeFrame = 64 << 10

const zmtpGreetingLen = 64

// guardConn sits under go-zeromq's handshake. go-zeromq allocates whatever
// a frame header claims, so guardConn reads each frame header first, checks
// the size, and only then lets go-zeromq see it. It reads exactly what is
// asked for, never ahead, so after the handshake the next byte on the
// underlying connection is the first frame.
type guardConn struct {
	net.Conn
	greetLeft int    // greeting bytes still to pass through
	pending   []byte // a checked frame header not yet handed over
	bodyLeft  uint64 // body bytes of the current frame still to pass
	limit     uint64
	hdr       [9]byte
}

func (g *guardConn) Read(p []byte) (int, error) {
	switch {
	case len(p) == 0:
		return 0, nil
	case g.greetLeft > 0:
		n, err := g.Conn.Read(p[:min(len(p), g.greetLeft)])
		g.greetLeft -= n
		return n, err
	case len(g.pending) > 0:
		n := copy(p, g.pending)
		g.pending = g.pending[n:]
		return n, nil
	case g.bodyLeft > 0:
		n, err := g.Conn.Read(p[:min(uint64(len(p)), g.bodyLeft)])
		g.bodyLeft -= uint64(n)
		return n, err
	}
	// At a frame boundary: read and check the whole header first.
	if _, err := io.ReadFull(g.Conn, g.hdr[:2]); err != nil {
		return 0, err
	}
	hlen, size := 2, uint64(g.hdr[1])
	if g.hdr[0]&flagLong != 0 {
		hlen = 9
		if _, err := io.ReadFull(g.Conn, g.hdr[2:9]); err != nil {
			return 0, err
		}
		size = binary.BigEndian.Uint64(g.hdr[1:9])
	}
	if size > g.limit {
		return 0, fmt.Errorf("%w: handshake frame of %d bytes, limit %d", ErrOversize, size, g.limit)
	}
	if g.hdr[0]&flagMore != 0 {
		// Handshake commands are single frames. go-zeromq would read
		// MORE frames without end, each one allocated and kept.
		return 0, fmt.Errorf("%w: handshake frame with the MORE flag", ErrProtocol)
	}
	g.pending, g.bodyLeft = g.hdr[:hlen], size
	n := copy(p, g.pending)
	g.pending = g.pending[n:]
	return n, nil
}

// handshake runs the ZMTP greeting and NULL handshake over conn with
// go-zeromq's connection layer, bounded in time and in what it may
// allocate. It returns the peer's metadata. go-zeromq's metadata parser can
// panic on a forged READY command; that is turned into an error.
func handshake(conn net.Conn, typ zmq4.SocketType, id []byte, server bool, timeout time.Duration) (meta zmq4.Metadata, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", ErrHandshake, r)
		}
	}()
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return nil, err
	}
	g := &guardConn{Conn: conn, greetLeft: zmtpGreetingLen, limit: maxHandshakeFrame}
	zc, err := zmq4.Open(g, null.Security(), typ, zmq4.SocketIdentity(id), server, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrHandshake, err)
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return nil, err
	}
	return zc.Peer.Meta, nil
}

// greetConn gives an accepted connection a short deadline for the peer's
// 64-byte greeting, shorter than the handshake's: a connection that says
// nothing is closed after GreetingTimeout (nats-server closes a client
// that has not authenticated after auth_timeout, 2 s; libzmq waits
// ZMQ_HANDSHAKE_IVL, 30 s, for the whole handshake). Once the greeting
// is in, the deadline the handshake set applies. It sits under the
// handshake (go-zeromq's or transport/security's), which reads and sets
// deadlines on one goroutine.
type greetConn struct {
	net.Conn
	left     int       // greeting bytes not yet read
	by       time.Time // the greeting's deadline
	later    time.Time // the deadline the handshake asked for
	timedOut bool      // the greeting did not come in time
}

func newGreetConn(conn net.Conn, timeout time.Duration) *greetConn {
	g := &greetConn{Conn: conn, left: zmtpGreetingLen, by: time.Now().Add(timeout)}
	_ = conn.SetDeadline(g.by)
	return g
}

// SetDeadline sets the handshake's deadline, which waits for the
// greeting's while that is not in.
func (g *greetConn) SetDeadline(t time.Time) error {
	if g.left > 0 {
		g.later = t
		if t.IsZero() || t.After(g.by) {
			t = g.by
		}
	}
	return g.Conn.SetDeadline(t)
}

func (g *greetConn) Read(p []byte) (int, error) {
	n, err := g.Conn.Read(p)
	if g.left > 0 {
		g.left -= n
		switch {
		case g.left <= 0:
			if derr := g.Conn.SetDeadline(g.later); err == nil {
				err = derr
			}
		case errors.Is(err, os.ErrDeadlineExceeded):
			g.timedOut = true
		}
	}
	return n, err
}

// unwrapGreet is the connection under a greetConn, which a peer's reader
// and writer use directly (the writer's non-blocking write needs the
// *net.TCPConn).
func unwrapGreet(c net.Conn) net.Conn {
	if g, ok := c.(*greetConn); ok {
		return g.Conn
	}
	return c
}
