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
// A connection past the bound of all is not refused: it takes the slot of
// the oldest handshake, whose connection is closed and counted. Past the
// bound of its source address, it takes the slot of that address's oldest
// handshake only when that one has waited SourceEvictAge; otherwise it is
// refused (closed and counted) and its peer connects again later. A
// source's young handshakes are a herd, not a stall: every service of a
// node reconnecting at once after a restart. Evicting them livelocks the
// herd (each handshake is evicted before it ends; with 5,000 libzmq peers
// from 127.0.0.1, a few hundred of them connected in 30 s, and the count
// kept falling back as the connected were evicted in their turn), and an
// address that floods only takes its own slots. A legitimate
// handshake takes milliseconds, so the oldest one is the likeliest to be
// stalled; refusing the newest instead would lock every new peer out for
// as long as the stalled ones are allowed to wait. libzmq bounds a
// handshake only by ZMQ_HANDSHAKE_IVL (30 s), and nats-server only by
// auth_timeout (2 s) and max_connections, which counts connections not
// yet authenticated: both let a crowd of silent connections fill the
// server; the greeting deadline (Options.GreetingTimeout, nats-server's
// 2 s) and this bound together are what stop it here.
type HandshakeLimit struct {
	max, perSource int
	// SourceEvictAge is how long a handshake must have waited before a
	// newer one from its address may take its slot (DefaultSourceEvictAge).
	SourceEvictAge time.Duration

	mu       sync.Mutex
	order    list.List // *pendingConn, oldest first
	bySource map[string]int
}

// NewHandshakeLimit allows at most max handshakes at once, and at most
// perSource from one address (both >= 1).
func NewHandshakeLimit(max, perSource int) *HandshakeLimit {
	return &HandshakeLimit{max: max, perSource: perSource, SourceEvictAge: DefaultSourceEvictAge, bySource: make(map[string]int)}
}

// DefaultSourceEvictAge is HandshakeLimit.SourceEvictAge's default: far
// longer than a handshake on loopback or a LAN takes, far shorter than the
// greeting deadline that closes a silent connection anyway.
const DefaultSourceEvictAge = 250 * time.Millisecond

// pendingConn is one connection in its handshake, as HandshakeLimit holds it.
type pendingConn struct {
	conn   net.Conn
	source string
	at     time.Time     // when it was admitted
	s      *socket       // the socket that accepted it
	elem   *list.Element // nil once it left the limit
}

// admit registers conn, whose handshake starts on socket s; when a bound
// is reached the oldest handshake in the way is closed, and counted (as
// refused{reason=source_limit} or {reason=handshake_limit}) by the socket
// that accepted it. A connection past its source's bound whose oldest
// handshake is younger than SourceEvictAge is refused: admit returns nil,
// and the caller closes it (refuse). A nil limit admits all.
func (l *HandshakeLimit) admit(conn net.Conn, s *socket) *pendingConn {
	h := &pendingConn{conn: conn, source: sourceOf(conn.RemoteAddr()), s: s, at: time.Now()}
	if l == nil {
		return h
	}
	var victim *pendingConn
	perSource := false
	l.mu.Lock()
	if l.bySource[h.source] >= l.perSource {
		for e := l.order.Front(); e != nil; e = e.Next() {
			if o := e.Value.(*pendingConn); o.source == h.source {
				victim, perSource = o, true
				break
			}
		}
		if victim != nil && h.at.Sub(victim.at) < l.SourceEvictAge {
			l.mu.Unlock()
			return nil // a herd: refuse the newcomer, not the young
		}
	} else if l.order.Len() >= l.max {
		victim = l.order.Front().Value.(*pendingConn)
	}
	if victim != nil {
		l.remove(victim)
	}
	h.elem = l.order.PushBack(h)
	l.bySource[h.source]++
	l.mu.Unlock()
	if victim != nil {
		victim.s.evicted(victim.conn, perSource, l)
	}
	return h
}

// done removes a handshake that ended (either way); once only, and not
// after an eviction removed it.
func (l *HandshakeLimit) done(h *pendingConn) {
	if l == nil {
		return
	}
	l.mu.Lock()
	if h.elem != nil {
		l.remove(h)
	}
	l.mu.Unlock()
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
