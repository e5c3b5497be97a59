package transport

import (
	"errors"
	"net"
	"sync/atomic"
	"time"

	"github.com/go-zeromq/zmq4"

	"github.com/zmq-proxy/zmq-proxy/transport/security"
)

// This file is the hook between the socket machinery and
// transport/security: with Options.Security set, a connection's greeting
// and handshake are PLAIN or CURVE instead of go-zeromq's NULL, and for
// CURVE the connection the peer's reader and writer use encrypts each
// burst the writer hands it (one write per burst) and decrypts what the
// reader reads.

// connHandshake runs the handshake the socket is configured for and
// returns the peer's metadata and the connection to use from here on
// (conn itself, or CURVE's encrypting connection); on error, conn.
func (s *socket) connHandshake(conn net.Conn, server bool) (zmq4.Metadata, net.Conn, error) {
	if s.opts.Security == nil {
		meta, err := handshake(conn, s.typ, s.opts.Identity, server, s.opts.HandshakeTimeout)
		return meta, conn, err
	}
	if err := conn.SetDeadline(time.Now().Add(s.opts.HandshakeTimeout)); err != nil {
		return nil, conn, err
	}
	sess, err := security.Handshake(conn, s.opts.Security, string(s.typ), s.opts.Identity, s.opts.MaxMessageSize)
	if err != nil {
		var n *atomic.Uint64
		switch {
		case errors.Is(err, security.ErrThrottled):
			n = &s.opts.Stats.AuthThrottled
		case errors.Is(err, security.ErrReplayed):
			n = &s.opts.Stats.AuthReplayed
		}
		if n != nil {
			// A flood: counted always, logged once a while.
			n.Add(1)
			if s.warn.flood.Allow(time.Now()) {
				s.log.Warn("handshake flood: handshakes turned away unchecked", "mechanism", s.opts.Security.Name(),
					"remote", conn.RemoteAddr().String(), "err", err,
					"throttled_total", s.opts.Stats.AuthThrottled.Load(), "replayed_total", s.opts.Stats.AuthReplayed.Load())
			}
		}
		if errors.Is(err, security.ErrRefused) {
			n := s.opts.Stats.AuthRefused.Add(1)
			if s.warn.auth.Allow(time.Now()) {
				s.log.Warn("credentials refused", "mechanism", s.opts.Security.Name(),
					"remote", conn.RemoteAddr().String(), "err", err, "refused_total", n)
			}
		}
		return nil, conn, err
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return nil, conn, err
	}
	if sess.User != "" {
		s.log.Debug("peer authenticated", "mechanism", s.opts.Security.Name(), "remote", conn.RemoteAddr().String(), "user", sess.User)
	}
	return zmq4.Metadata(sess.Peer), sess.Conn, nil
}

// noteReadError counts how a secure connection's reader ended: a message
// that failed to decrypt (the connection is closed), or one too large.
func (s *socket) noteReadError(err error, p *peer) {
	switch {
	case errors.Is(err, security.ErrDecrypt):
		n := s.opts.Stats.DecryptFailed.Add(1)
		if s.warn.decrypt.Allow(time.Now()) {
			s.log.Warn("peer closed: a message failed to decrypt", "remote", p.conn.RemoteAddr().String(),
				"identity", printable(p.id), "err", err, "decrypt_failed_total", n)
		}
	case errors.Is(err, security.ErrTooLarge):
		n := s.opts.Stats.DroppedOversize.Add(1)
		if s.warn.oversize.Allow(time.Now()) {
			s.log.Warn("peer closed: message too large", "remote", p.conn.RemoteAddr().String(),
				"identity", printable(p.id), "err", err, "dropped_total", n)
		}
	}
}
