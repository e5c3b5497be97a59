package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/go-zeromq/zmq4"

	"github.com/zmq-proxy/zmq-proxy/transport/security"
)

// Options configure a socket. The zero value of a field means its default.
type Options struct {
	// HWM is each peer's outbound high-water mark, in messages.
	HWM int
	// MaxMessageSize bounds one inbound message, all frames, in bytes.
	MaxMessageSize int64
	// Identity is this socket's identity, sent to peers in the handshake.
	Identity []byte
	// HandshakeTimeout bounds the ZMTP greeting and handshake.
	HandshakeTimeout time.Duration
	// ReconnectMin and ReconnectMax bound the connecting side's
	// exponential backoff between attempts.
	ReconnectMin, ReconnectMax time.Duration
	// OnBatch receives inbound messages (ROUTER, DEALER, SUB). It runs on
	// the peer's reader goroutine, takes the batch's hold and must call
	// Release. Nil drops them.
	OnBatch func(*Batch)
	// OnError is called once if the socket fails for good (its listener
	// broke); the owner should close it and may open a new one.
	OnError func(error)
	// OnPeer, if set, is called when a peer is attached (up) after its
	// handshake and again when it is detached (down). It runs on the
	// connection's goroutine and must not block.
	OnPeer func(id []byte, up bool)
	// Security is the connection's security mechanism (transport/security:
	// PLAIN or CURVE, server or client side); nil = NULL, none.
	Security security.Mechanism
	// Stats receives the counters; nil = private counters.
	Stats *Stats
	// Logger; nil = slog.Default().
	Logger *slog.Logger
}

const (
	defaultHWM              = 1000
	defaultMaxMessageSize   = 16 << 20
	defaultHandshakeTimeout = 10 * time.Second
	defaultReconnectMin     = 100 * time.Millisecond
	defaultReconnectMax     = 5 * time.Second
)

func (o *Options) setDefaults() {
	if o.HWM <= 0 {
		o.HWM = defaultHWM
	}
	if o.MaxMessageSize <= 0 {
		o.MaxMessageSize = defaultMaxMessageSize
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = defaultHandshakeTimeout
	}
	if o.ReconnectMin <= 0 {
		o.ReconnectMin = defaultReconnectMin
	}
	if o.ReconnectMax < o.ReconnectMin {
		o.ReconnectMax = max(defaultReconnectMax, o.ReconnectMin)
	}
	if o.Stats == nil {
		o.Stats = new(Stats)
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}

// role is what makes a socket a ROUTER, PUB, DEALER or SUB.
type role interface {
	// attach admits a peer after its handshake; an error refuses it.
	attach(p *peer, meta zmq4.Metadata) error
	// detach forgets a peer whose connection ended.
	detach(p *peer)
	// recv takes an inbound batch from p (and its hold).
	recv(p *peer, b *Batch)
}

// commandHandler is a role that acts on ZMTP commands other than PING.
type commandHandler interface {
	command(p *peer, name string, data []byte)
}

// socket is the machinery the four socket types share: a listener or
// dialers, the live peers, and the goroutines that serve them. Every
// goroutine it starts is tracked by wg and ends before Close returns.
type socket struct {
	typ  zmq4.SocketType
	opts Options
	role role
	log  *slog.Logger

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	ln      net.Listener
	peers   map[*peer]struct{}
	errOnce sync.Once
	dialers map[string]*dialer // connect side: by host:port

	authLog, decryptLog rateLog // secure.go
}

func newSocket(typ zmq4.SocketType, opts Options, r role) *socket {
	opts.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	return &socket{
		typ:    typ,
		opts:   opts,
		role:   r,
		log:    opts.Logger,
		ctx:    ctx,
		cancel: cancel,
		peers:  make(map[*peer]struct{}),
	}
}

// ParseEndpoint turns "tcp://host:port" (or "host:port") into host:port.
func ParseEndpoint(ep string) (string, error) {
	addr := strings.TrimPrefix(ep, "tcp://")
	if strings.Contains(addr, "://") {
		return "", fmt.Errorf("endpoint %q: only tcp:// is supported", ep)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("endpoint %q: %w", ep, err)
	}
	if host == "*" {
		host = ""
	}
	return net.JoinHostPort(host, port), nil
}

// bind listens on endpoint and serves every connection that arrives.
func (s *socket) bind(endpoint string) error {
	addr, err := ParseEndpoint(endpoint)
	if err != nil {
		return err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(s.ctx, "tcp", addr)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		ln.Close()
		return ErrClosed
	}
	s.ln = ln
	s.mu.Unlock()
	s.wg.Add(1)
	go s.acceptLoop(ln)
	return nil
}

// Addr is the bound address as tcp://host:port, "" if not bound.
func (s *socket) addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return "tcp://" + s.ln.Addr().String()
}

func (s *socket) acceptLoop(ln net.Listener) {
	defer s.wg.Done()
	delay := 5 * time.Millisecond
	for {
		conn, err := ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscallEMFILE) {
				// Out of file descriptors or similar: back off, go on.
				s.log.Warn("accept failed, retrying", "err", err, "retry_in", delay)
				select {
				case <-time.After(delay):
				case <-s.ctx.Done():
					return
				}
				delay = min(2*delay, time.Second)
				continue
			}
			s.fail(fmt.Errorf("accept on %s: %w", ln.Addr(), err))
			return
		}
		delay = 5 * time.Millisecond
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(conn, true)
		}()
	}
}

func (s *socket) fail(err error) {
	s.errOnce.Do(func() {
		if s.opts.OnError != nil {
			s.opts.OnError(err)
		}
	})
}

// serve runs one connection to its end: handshake, attach, then the
// writer on a goroutine of its own and the reader on this one. It returns
// the handshake error, if any, so that a dialer can tell it from a session.
func (s *socket) serve(conn net.Conn, server bool) (attached bool) {
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	// Close must not wait for the handshake timeout of a stalled peer.
	raw := conn // conn becomes the secure connection, if any
	stop := context.AfterFunc(s.ctx, func() { raw.Close() })
	meta, conn, err := s.connHandshake(conn, server)
	stop()
	if err != nil {
		s.opts.Stats.BadHandshake.Add(1)
		if errors.Is(err, ErrOversize) {
			s.opts.Stats.DroppedOversize.Add(1)
		}
		s.log.Debug("handshake failed", "remote", conn.RemoteAddr().String(), "err", err)
		conn.Close()
		return false
	}
	p := newPeer(s, nil, conn)
	s.mu.Lock()
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		conn.Close()
		return false
	}
	if err := s.role.attach(p, meta); err != nil {
		s.mu.Unlock()
		s.opts.Stats.Refused.Add(1)
		s.log.Warn("peer refused", "remote", conn.RemoteAddr().String(), "identity", printable(p.id), "err", err)
		conn.Close()
		return false
	}
	s.peers[p] = struct{}{}
	s.mu.Unlock()
	s.opts.Stats.Peers.Add(1)
	if s.opts.OnPeer != nil {
		s.opts.OnPeer(p.id, true)
	}
	s.log.Debug("peer connected", "remote", conn.RemoteAddr().String(), "identity", printable(p.id))

	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		if err := p.writeLoop(); err != nil {
			p.shutdown()
		}
	}()
	mr := newMsgReader(conn, s.opts.MaxMessageSize, p.done)
	err = mr.run(p.id, func(b *Batch) {
		s.opts.Stats.Received.Add(uint64(len(b.Msgs)))
		s.role.recv(p, b)
	}, func(name string, data []byte) error {
		if name == zmq4.CmdPing {
			// RFC 37: PONG echoes the PING's context (after the 2-byte TTL).
			if len(data) >= 2 {
				data = data[2:]
			}
			p.sendCommand(zmq4.CmdPong, data)
		} else if h, ok := s.role.(commandHandler); ok {
			h.command(p, name, data)
		}
		return nil
	})
	if errors.Is(err, ErrOversize) {
		s.opts.Stats.DroppedOversize.Add(1)
		s.log.Warn("peer closed: message too large", "remote", conn.RemoteAddr().String(), "identity", printable(p.id), "err", err)
	} else if errors.Is(err, ErrProtocol) {
		s.log.Warn("peer closed: protocol error", "remote", conn.RemoteAddr().String(), "identity", printable(p.id), "err", err)
	} else if s.opts.Security != nil {
		s.noteReadError(err, p)
	}
	s.mu.Lock()
	s.role.detach(p)
	delete(s.peers, p)
	s.mu.Unlock()
	p.shutdown()
	<-writerDone
	s.opts.Stats.Peers.Add(-1)
	if s.opts.OnPeer != nil {
		s.opts.OnPeer(p.id, false)
	}
	s.log.Debug("peer disconnected", "remote", conn.RemoteAddr().String(), "identity", printable(p.id))
	return true
}

// connect keeps a connection to endpoint up until Close: dial, serve,
// and after a failure or a disconnect wait with capped exponential backoff
// (with jitter) before dialing again.
func (s *socket) connect(endpoint string) error {
	addr, err := ParseEndpoint(endpoint)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ctx.Err() != nil {
		return ErrClosed
	}
	if s.dialers[addr] != nil {
		return nil // one connection per endpoint
	}
	ctx, cancel := context.WithCancel(s.ctx)
	d := &dialer{cancel: cancel, done: make(chan struct{})}
	if s.dialers == nil {
		s.dialers = make(map[string]*dialer)
	}
	s.dialers[addr] = d
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(d.done)
		backoff := s.opts.ReconnectMin
		var nd net.Dialer
		for {
			conn, err := nd.DialContext(ctx, "tcp", addr)
			if err == nil {
				// Disconnect ends this session as Close ends all of them.
				stop := context.AfterFunc(ctx, func() { conn.Close() })
				if s.serve(conn, false) {
					backoff = s.opts.ReconnectMin
				}
				stop()
			} else if ctx.Err() == nil {
				s.log.Debug("connect failed", "endpoint", endpoint, "err", err, "retry_in", backoff)
			}
			wait := backoff/2 + rand.N(backoff/2+1)
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			backoff = min(2*backoff, s.opts.ReconnectMax)
		}
	}()
	return nil
}

// disconnect stops the dialer of endpoint and closes its connection, and
// waits for both. Unknown endpoints are ignored.
func (s *socket) disconnect(endpoint string) error {
	addr, err := ParseEndpoint(endpoint)
	if err != nil {
		return err
	}
	s.mu.Lock()
	d := s.dialers[addr]
	delete(s.dialers, addr)
	s.mu.Unlock()
	if d != nil {
		d.cancel()
		<-d.done
	}
	return nil
}

// endpoints lists the endpoints the socket keeps connections to.
func (s *socket) endpoints() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.dialers))
	for a := range s.dialers {
		out = append(out, "tcp://"+a)
	}
	return out
}

// dialer keeps one endpoint connected.
type dialer struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// close stops the listener and the dialers, closes every peer, and waits
// for every goroutine of the socket. Safe to call twice.
func (s *socket) close() error {
	s.mu.Lock()
	s.cancel()
	if s.ln != nil {
		s.ln.Close()
	}
	peers := make([]*peer, 0, len(s.peers))
	for p := range s.peers {
		peers = append(peers, p)
	}
	s.mu.Unlock()
	for _, p := range peers {
		p.shutdown()
	}
	s.wg.Wait()
	return nil
}

// Printable renders an identity or a key for logs: text as is, binary as
// hex.
func Printable(id []byte) string { return printable(id) }

func printable(id []byte) string {
	for _, c := range id {
		if c < 0x20 || c > 0x7e {
			return fmt.Sprintf("0x%x", id)
		}
	}
	return string(id)
}
