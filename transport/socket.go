package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zeromq/zmq4"

	"github.com/zmq-proxy/zmq-proxy/internal/defaults"
	"github.com/zmq-proxy/zmq-proxy/transport/security"
)

// Options configure a socket. The zero value of a field means its default.
type Options struct {
	// HWM is each peer's outbound high-water mark, in messages.
	HWM int
	// HWMBytes is each peer's outbound high-water mark, in bytes of
	// encoded messages and commands. A message that would take the queue
	// past it is dropped, unless the queue is empty (so one message larger
	// than the mark still goes out).
	HWMBytes int
	// MaxMessageSize bounds one inbound message, all frames, in bytes.
	MaxMessageSize int64
	// MaxFrames bounds the frames of one inbound message. libzmq has no
	// such bound (only ZMQ_MAXMSGSIZE); past it the connection is closed
	// and the message dropped and counted, as libzmq does past
	// ZMQ_MAXMSGSIZE and nats-server past max_control_line: a peer that
	// sends it is broken or hostile, and its stream cannot be trusted.
	MaxFrames int
	// MaxTopics and MaxTopicBytes bound the subscriptions that all the
	// subscribers of a PUB hold together (distinct prefixes per
	// subscriber, and their bytes); a subscription past them is ignored
	// and counted in Stats.RefusedTopics, as one past a subscriber's own
	// limits is.
	MaxTopics, MaxTopicBytes int
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
	// Conns, if set, bounds the established peers of the connections
	// accepted (shared by every socket that holds it); a connection past
	// it is closed after its handshake and counted in
	// Stats.RefusedMaxConns.
	Conns *ConnLimit
	// Handshakes, if set, bounds the accepted connections still in their
	// handshake (shared like Conns); see HandshakeLimit.
	Handshakes *HandshakeLimit
	// GreetingTimeout bounds the wait for an accepted peer's 64-byte
	// ZMTP greeting (the rest of the handshake has HandshakeTimeout).
	GreetingTimeout time.Duration
	// Security is the connection's security mechanism (transport/security:
	// PLAIN or CURVE, server or client side); nil = NULL, none.
	Security security.Mechanism
	// Stats receives the counters; nil = private counters.
	Stats *Stats
	// Logger; nil = slog.Default().
	Logger *slog.Logger

	// Heartbeat, if set, makes a connection that has sent something since
	// it last heard from its peer send a ZMTP PING (RFC 37) every
	// Heartbeat, and close the connection when nothing at all (a PONG, a
	// message) has come back for HeartbeatTimeout (default 4 × Heartbeat),
	// as libzmq's ZMQ_HEARTBEAT_IVL and ZMQ_HEARTBEAT_TIMEOUT do, but only
	// while it waits: an idle connection sends no PING. A peer that hangs
	// (SIGSTOP, a frozen host) keeps its TCP connection open, and only
	// silence tells. The connecting side then redials as after any lost
	// connection.
	Heartbeat, HeartbeatTimeout time.Duration

	// Linger is how long Close waits for what is queued to connected
	// peers to be written, as libzmq's ZMQ_LINGER; 0 drops it at once.
	// A sender that queues and closes (a command that casts and exits)
	// sets it.
	Linger time.Duration
}

// maxPingContext is the longest PING context RFC 37 allows; a longer one
// is a protocol error (the PONG would echo it).
const maxPingContext = 16

const (
	defaultHWM              = 1000
	defaultHWMBytes         = 16 << 20
	defaultMaxMessageSize   = 16 << 20
	defaultMaxFrames        = 1024 // an oslo.messaging message has 6 to 8
	defaultHandshakeTimeout = 10 * time.Second
	defaultGreetingTimeout  = 2 * time.Second // nats-server's auth_timeout
	defaultReconnectMin     = 100 * time.Millisecond
	defaultReconnectMax     = 5 * time.Second
)

func (o *Options) setDefaults() {
	defaults.Set(&o.HWM, defaultHWM)
	defaults.Set(&o.HWMBytes, defaultHWMBytes)
	defaults.Set(&o.MaxMessageSize, defaultMaxMessageSize)
	defaults.Set(&o.MaxTopics, defaultMaxTopics)
	defaults.Set(&o.MaxTopicBytes, defaultMaxTopicBytes)
	defaults.Set(&o.MaxFrames, defaultMaxFrames)
	defaults.Set(&o.HandshakeTimeout, defaultHandshakeTimeout)
	defaults.Set(&o.GreetingTimeout, min(defaultGreetingTimeout, o.HandshakeTimeout))
	defaults.Set(&o.ReconnectMin, defaultReconnectMin)
	if o.ReconnectMax < o.ReconnectMin {
		o.ReconnectMax = max(defaultReconnectMax, o.ReconnectMin)
	}
	if o.Heartbeat > 0 && o.HeartbeatTimeout <= 0 {
		o.HeartbeatTimeout = 4 * o.Heartbeat
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

	notAccepting atomic.Bool // stopAccepting closed the listener on purpose

	mu      sync.Mutex
	ln      net.Listener
	peers   map[*peer]struct{}
	errOnce sync.Once
	dialers map[string]*dialer // connect side: by host:port

	// warn rate-limits each kind of per-connection warning (auth and
	// decrypt: secure.go).
	warn struct {
		refused, oversize, frames, protocol, conns, topics, auth, decrypt LogLimit
		greeting, evicted, identity, flood                                LogLimit
	}
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
	if s.notAccepting.Load() {
		ln.Close() // StopAccepting came first: bound, reported, accepting nothing
		return nil
	}
	s.wg.Add(1)
	go s.acceptLoop(ln)
	return nil
}

// stopAccepting closes the listener: new connections are refused by the
// kernel, those accepted go on. The bound address stays reported.
func (s *socket) stopAccepting() {
	s.notAccepting.Store(true)
	s.mu.Lock()
	ln := s.ln
	s.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
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
			if s.ctx.Err() != nil || s.notAccepting.Load() {
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
		h := s.opts.Handshakes.admit(conn, s)
		if h == nil {
			continue // waits for a slot (startQueued), or was refused
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(conn, h)
		}()
	}
}

// startQueued starts the handshake of a connection that waited for a slot
// (HandshakeLimit.done), unless the socket is closing.
func (s *socket) startQueued(h *pendingConn) {
	s.mu.Lock()
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		h.conn.Close()
		s.opts.Handshakes.done(h)
		return
	}
	s.wg.Add(1) // under s.mu, before close cancels: before its wg.Wait
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		s.serve(h.conn, h)
	}()
}

// evicted closes an accepted connection whose handshake slot a newer
// connection took (HandshakeLimit.admit), or a newcomer refused because
// the queue of those waiting for a slot is full, and counts it.
func (s *socket) evicted(conn net.Conn, perSource bool, l *HandshakeLimit) {
	st := s.opts.Stats
	c, reason, limit := &st.RefusedHandshakeLimit, "handshake_limit", l.max
	if perSource {
		c, reason, limit = &st.RefusedSourceLimit, "source_limit", l.perSource
	}
	n := c.Add(1) // before the close, so that a peer that sees it finds it counted
	conn.Close()
	if s.warn.evicted.Allow(time.Now()) {
		s.log.Warn("connection closed in its handshake: too many handshakes", "remote", conn.RemoteAddr().String(),
			"reason", reason, "limit", limit, "refused_total", n)
	}
}

func (s *socket) fail(err error) {
	s.errOnce.Do(func() {
		if s.opts.OnError != nil {
			s.opts.OnError(err)
		}
	})
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
				if s.serve(conn, nil) {
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
	if s.opts.Linger > 0 {
		s.flush(time.Now().Add(s.opts.Linger))
	}
	s.mu.Lock()
	s.cancel()
	if s.ln != nil {
		s.ln.Close()
	}
	peers := slices.Collect(maps.Keys(s.peers))
	s.mu.Unlock()
	s.opts.Handshakes.forget(s)
	for _, p := range peers {
		p.shutdown()
	}
	s.wg.Wait()
	return nil
}

// flush waits until every peer's queue is written, or deadline.
func (s *socket) flush(deadline time.Time) {
	for time.Now().Before(deadline) && s.ctx.Err() == nil {
		s.mu.Lock()
		peers := make([]*peer, 0, len(s.peers))
		for p := range s.peers {
			peers = append(peers, p)
		}
		s.mu.Unlock()
		if !slices.ContainsFunc(peers, (*peer).unwritten) {
			return
		}
		time.Sleep(time.Millisecond)
	}
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

// peerSet is a copy-on-write list of connected peers: readers load it
// without a lock, changes are serialised by mu.
type peerSet struct {
	mu    sync.Mutex
	peers atomic.Pointer[[]*peer]
}

func (ps *peerSet) load() []*peer {
	if l := ps.peers.Load(); l != nil {
		return *l
	}
	return nil
}

func (ps *peerSet) add(p *peer) {
	ps.mu.Lock()
	old := ps.load()
	next := make([]*peer, len(old), len(old)+1)
	copy(next, old)
	next = append(next, p)
	ps.peers.Store(&next)
	ps.mu.Unlock()
}

func (ps *peerSet) remove(p *peer) {
	ps.mu.Lock()
	old := ps.load()
	next := make([]*peer, 0, len(old))
	for _, q := range old {
		if q != p {
			next = append(next, q)
		}
	}
	ps.peers.Store(&next)
	ps.mu.Unlock()
}
