package transport

import (
	"container/list"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ConnLimit bounds the established peers of the connections a process
// accepts, across the sockets that share it, so that no crowd of peers
// can take every file descriptor. A connection takes its slot after its
// handshake; until then it holds one of a HandshakeLimit.
type ConnLimit struct {
	max int64
	n   atomic.Int64
}

// NewConnLimit allows at most max connections at once (max >= 1).
func NewConnLimit(max int) *ConnLimit { return &ConnLimit{max: int64(max)} }

// Max is the limit.
func (l *ConnLimit) Max() int { return int(l.max) }

// acquire takes one connection slot; false when none is left. A nil
// limit always succeeds.
func (l *ConnLimit) acquire() bool {
	if l == nil {
		return true
	}
	if l.n.Add(1) > l.max {
		l.n.Add(-1)
		return false
	}
	return true
}

func (l *ConnLimit) release() {
	if l != nil {
		l.n.Add(-1)
	}
}

// fdReserve are the file descriptors DefaultMaxConnections leaves for
// everything that is not a peer: listeners, the registry client, the
// metrics server, logs.
const fdReserve = 64

// DefaultMaxConnections is the soft RLIMIT_NOFILE (which Go raises to the
// hard limit at start) less a reserve and less DefaultMaxHandshakes, at
// least 1: established peers and handshakes together stay within the
// file descriptors.
func DefaultMaxConnections() int {
	return max(openFiles()-fdReserve-DefaultMaxHandshakes(), 1)
}

// DefaultHandshakesPerSource is the default bound on the handshakes under
// way from one address: a host behind which many clients start at once
// (a NAT, a node of many pods) waits its turn, one that holds them open
// only evicts its own.
const DefaultHandshakesPerSource = 64

// DefaultMaxHandshakes is the default bound on the handshakes under way,
// all addresses together: an eighth of the file descriptors that are
// not reserved, between 16 and 1024.
func DefaultMaxHandshakes() int {
	return min(max((openFiles()-fdReserve)/8, 16), 1024)
}

// openFiles is the soft RLIMIT_NOFILE, 1<<20 if unknown or unlimited.
func openFiles() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur > 1<<30 {
		return 1 << 20
	}
	return int(rl.Cur)
}

// logWarnEvery is the least time between two warnings of one kind from
// one socket.
const logWarnEvery = time.Minute

// LogLimit lets one log line through per minute, from any number of
// goroutines, so that no peer can flood the log; the line carries the
// running count of what it reports instead.
type LogLimit struct{ last atomic.Int64 }

// Allow reports whether a line may be logged now.
func (l *LogLimit) Allow(now time.Time) bool {
	last := l.last.Load()
	if last != 0 && now.UnixNano()-last < int64(logWarnEvery) {
		return false
	}
	return l.last.CompareAndSwap(last, now.UnixNano())
}

// HandshakeLimit bounds the accepted connections that have not finished
// their ZMTP handshake, in all and per source address, across the
// sockets that share it. Such connections do not count toward ConnLimit,
// which bounds established peers only: a crowd that connects and never
// speaks cannot take the slots of the peers that authenticate.
//
// A connection past either bound takes the slot of the oldest handshake
// in its way (of its own address when that address is at its bound),
// whose connection is closed and counted, when that handshake has waited
// EvictAge: a legitimate handshake takes milliseconds, so an old one is
// the likeliest to be stalled. When the handshakes in the way are
// younger, they are a herd, not a stall (every service of a node
// connecting again at once after a restart): the newcomer waits, its
// connection accepted but not read, in a queue of at most MaxQueued (past
// it, it is refused and counted), and its handshake starts when a slot
// its bounds allow frees. Evicting the young instead livelocked a herd
// larger than a bound (each handshake evicted before it ended: of 5,000
// libzmq peers from 127.0.0.1, 30 connected in 25 s), and refusing the
// newcomers made the herd reconnect in a storm its own I/O thread could
// not keep up with (84 of 5,000). libzmq bounds a handshake only by
// ZMQ_HANDSHAKE_IVL (30 s), and nats-server only by auth_timeout (2 s)
// and max_connections, which counts connections not yet authenticated:
// both let a crowd of silent connections fill the server; the greeting
// deadline (Options.GreetingTimeout, nats-server's 2 s) and this bound
// together are what stop it here.
type HandshakeLimit struct {
	max, perSource int
	// EvictAge is how long a handshake must have waited before a newer
	// one may take its slot (DefaultEvictAge).
	EvictAge time.Duration
	// MaxQueued bounds the connections waiting for a slot (by default,
	// defaultMaxQueued).
	MaxQueued int

	mu       sync.Mutex
	order    list.List // *pendingConn in their handshake, oldest first
	queue    list.List // *pendingConn waiting for a slot, oldest first
	bySource map[string]int
}

// NewHandshakeLimit allows at most max handshakes at once, and at most
// perSource from one address (both >= 1).
func NewHandshakeLimit(max, perSource int) *HandshakeLimit {
	return &HandshakeLimit{max: max, perSource: perSource, EvictAge: DefaultEvictAge,
		MaxQueued: defaultMaxQueued(max), bySource: make(map[string]int)}
}

const (
	// DefaultEvictAge is HandshakeLimit.EvictAge's default: far longer
	// than a handshake on loopback or a LAN takes, far shorter than the
	// greeting deadline that closes a silent connection anyway.
	DefaultEvictAge = 250 * time.Millisecond
)

// defaultMaxQueued is HandshakeLimit.MaxQueued's default: four times the
// handshakes allowed at once, within a quarter of the open-file limit
// (each waiting connection holds a file descriptor, and a crowd that
// connects and never speaks must not take the descriptors the peers need:
// past the bound, a newcomer is refused and its descriptor closed).
func defaultMaxQueued(handshakes int) int {
	return min(4*handshakes, max((openFiles()-fdReserve)/4, 16))
}

// pendingConn is one connection in its handshake, or waiting for one, as
// HandshakeLimit holds it.
type pendingConn struct {
	conn   net.Conn
	source string
	at     time.Time     // when its handshake was admitted
	s      *socket       // the socket that accepted it
	elem   *list.Element // in order; nil once it left the limit
	queued *list.Element // in queue while it waits
}

// admit registers conn, accepted by socket s. It returns the handshake to
// start now, or nil when conn waits for a slot (s.startQueued starts it
// later) or was refused (closed and counted). When a bound is reached and
// the oldest handshake in the way has waited EvictAge, that one is closed
// and counted (as refused{reason=source_limit} or
// {reason=handshake_limit}) by the socket that accepted it. A nil limit
// admits all.
func (l *HandshakeLimit) admit(conn net.Conn, s *socket) *pendingConn {
	h := &pendingConn{conn: conn, source: sourceOf(conn.RemoteAddr()), s: s, at: time.Now()}
	if l == nil {
		return h
	}
	l.mu.Lock()
	victim, perSource, full := l.inTheWay(h.source, h.at)
	if full && victim == nil {
		if l.queue.Len() < l.MaxQueued {
			h.queued = l.queue.PushBack(h)
			l.mu.Unlock()
			return nil
		}
		l.mu.Unlock()
		s.evicted(conn, perSource, l) // refused: the queue is full
		return nil
	}
	if victim != nil {
		l.remove(victim)
	}
	l.start(h)
	l.mu.Unlock()
	if victim != nil {
		victim.s.evicted(victim.conn, perSource, l)
	}
	return h
}

// inTheWay reports whether a handshake from source would pass a bound
// (full), which one (perSource), and the handshake in its way it may take
// the slot of: the oldest, if it has waited EvictAge.
func (l *HandshakeLimit) inTheWay(source string, now time.Time) (victim *pendingConn, perSource, full bool) {
	perSource = l.bySource[source] >= l.perSource
	if !perSource && l.order.Len() < l.max {
		return nil, false, false
	}
	for e := l.order.Front(); e != nil; e = e.Next() {
		o := e.Value.(*pendingConn)
		if perSource && o.source != source {
			continue
		}
		if now.Sub(o.at) >= l.EvictAge {
			return o, perSource, true
		}
		break // the oldest in the way is young: so are the others
	}
	return nil, perSource, true
}

func (l *HandshakeLimit) start(h *pendingConn) {
	h.at = time.Now()
	h.elem = l.order.PushBack(h)
	l.bySource[h.source]++
}

// done removes a handshake that ended (either way); once only, and not
// after an eviction removed it. The connections waiting that its slot now
// allows start their handshakes.
func (l *HandshakeLimit) done(h *pendingConn) {
	if l == nil {
		return
	}
	l.mu.Lock()
	if h.elem != nil {
		l.remove(h)
	}
	var next []*pendingConn
	for e := l.queue.Front(); e != nil && l.order.Len() < l.max; {
		w := e.Value.(*pendingConn)
		e = e.Next()
		if l.bySource[w.source] < l.perSource {
			l.queue.Remove(w.queued)
			w.queued = nil
			l.start(w)
			next = append(next, w)
		}
	}
	l.mu.Unlock()
	for _, w := range next {
		w.s.startQueued(w)
	}
}

// forget drops the connections of socket s that wait for a slot, and
// closes them: s is closing.
func (l *HandshakeLimit) forget(s *socket) {
	if l == nil {
		return
	}
	var gone []*pendingConn
	l.mu.Lock()
	for e := l.queue.Front(); e != nil; {
		w := e.Value.(*pendingConn)
		e = e.Next()
		if w.s == s {
			l.queue.Remove(w.queued)
			w.queued = nil
			gone = append(gone, w)
		}
	}
	l.mu.Unlock()
	for _, w := range gone {
		w.conn.Close()
	}
}

func (l *HandshakeLimit) remove(h *pendingConn) {
	l.order.Remove(h.elem)
	h.elem = nil
	if n := l.bySource[h.source] - 1; n > 0 {
		l.bySource[h.source] = n
	} else {
		delete(l.bySource, h.source)
	}
}

// queued is the number of connections waiting for a slot, for tests.
func (l *HandshakeLimit) queued() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.queue.Len()
}

// pending is the number of handshakes under way, for tests.
func (l *HandshakeLimit) pending() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.order.Len()
}

// sourceOf is the address a connection came from, without its port.
func sourceOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}
