package security

import (
	"fmt"
	"net"
	"sync"
	"syscall"
	"time"

	"golang.org/x/time/rate"
)

// This file holds what keeps a flood of handshakes from starving the
// legitimate ones: CURVE's rate limits and replay memory (curveGuard),
// PLAIN's bounded and fair password checks (bcryptPool), and the live
// sessions a reload of the keys or users closes (liveSet).
//
// libzmq and nats-server have none of the first two (libzmq hands every
// HELLO to the mechanism at once, nats-server every CONNECT to bcrypt at
// once); both bound only connections. These are ours, as issue 16 asks.

// sourceOf is the peer's address without its port: what per-source limits
// key on. A connection that is not IP (net.Pipe in tests) is one source.
func sourceOf(conn net.Conn) string {
	if conn == nil {
		return ""
	}
	a := conn.RemoteAddr()
	if a == nil {
		return ""
	}
	if tcp, ok := a.(*net.TCPAddr); ok {
		return tcp.IP.String()
	}
	if host, _, err := net.SplitHostPort(a.String()); err == nil {
		return host
	}
	return a.String()
}

// CURVE HELLO rate limits. An admitted HELLO costs the server three
// X25519 and one key generation (about 0.2 ms of one core); a HELLO over
// the limits costs a map lookup and gets ERROR "300" (a temporary
// refusal: libzmq clients reconnect after their reconnect interval).
const (
	curveRatePerSource  = 100  // HELLOs per second from one address
	curveBurstPerSource = 200  // ... and in one burst (a host's clients reconnecting at once)
	curveRateTotal      = 1000 // HELLOs per second from everyone
	curveBurstTotal     = 1000
	curveMaxSources     = 4096 // per-source limiters kept; past it, idle ones are forgotten
	curveSourceIdle     = time.Minute
	curveReplayMemory   = 8192 // client short-term keys remembered to refuse a replayed HELLO
)

// curveGuard is shared by every connection of a CURVE server: the rate
// limits of HELLOs, and the short-term keys of the HELLOs already opened.
type curveGuard struct {
	total          *rate.Limiter
	perSource      rate.Limit
	burstPerSource int

	mu      sync.Mutex
	sources map[string]*sourceLimit
	seen    map[Key]struct{} // short-term keys of HELLOs that opened
	ring    []Key            // the same keys, oldest first out
	next    int
}

type sourceLimit struct {
	lim  *rate.Limiter
	last time.Time
}

func newCurveGuard() *curveGuard {
	return newCurveGuardLimits(curveRatePerSource, curveBurstPerSource, curveRateTotal, curveBurstTotal)
}

func newCurveGuardLimits(perSource rate.Limit, burstPerSource int, total rate.Limit, burstTotal int) *curveGuard {
	return &curveGuard{
		perSource: perSource, burstPerSource: burstPerSource,
		total:   rate.NewLimiter(total, burstTotal),
		sources: make(map[string]*sourceLimit),
		seen:    make(map[Key]struct{}, curveReplayMemory),
		ring:    make([]Key, curveReplayMemory),
	}
}

// replayed reports whether a HELLO with the short-term key k has opened
// before. A client makes a new short-term key for every connection (RFC
// 26), so a second HELLO with the same key is a replay: refusing it costs
// no X25519 at all.
func (g *curveGuard) replayed(k Key) bool {
	g.mu.Lock()
	_, ok := g.seen[k]
	g.mu.Unlock()
	return ok
}

// remember records k, a short-term key whose HELLO opened, forgetting the
// oldest when the memory is full.
func (g *curveGuard) remember(k Key) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.seen[k]; ok {
		return
	}
	old := g.ring[g.next]
	if old != (Key{}) {
		delete(g.seen, old)
	}
	g.ring[g.next] = k
	g.next = (g.next + 1) % len(g.ring)
	g.seen[k] = struct{}{}
}

// allow takes a token for a HELLO from src: its own, then the total. A
// source over its limit takes nothing from the total, so one address
// cannot use up everyone's share.
func (g *curveGuard) allow(src string, now time.Time) bool {
	g.mu.Lock()
	s := g.sources[src]
	if s == nil {
		if len(g.sources) >= curveMaxSources {
			for k, v := range g.sources {
				if now.Sub(v.last) > curveSourceIdle {
					delete(g.sources, k)
				}
			}
		}
		s = &sourceLimit{lim: rate.NewLimiter(g.perSource, g.burstPerSource)}
		if len(g.sources) < curveMaxSources {
			g.sources[src] = s
		}
	}
	s.last = now
	ok := s.lim.AllowN(now, 1)
	g.mu.Unlock()
	return ok && g.total.AllowN(now, 1)
}

// PLAIN password checks. bcrypt costs tens of milliseconds of CPU each: at
// most bcryptWorkers run at once, at most bcryptQueue HELLOs wait for one,
// and at most bcryptPerSource of those (waiting or hashing) come from one
// address. Past these a HELLO is refused at once with ERROR "300"
// (temporary) instead of waiting; a waiter whose peer has hung up is
// dropped without hashing.
const (
	bcryptWorkers   = 2
	bcryptQueue     = 32
	bcryptPerSource = 8
)

// bcryptWait bounds the wait for a worker: past it the HELLO is turned
// away as a busy server (the client retries), so that a flood cannot hold
// handshakes, and a socket's Close, for longer.
var bcryptWait = 3 * time.Second

// bcryptPool hands out the right to run one bcrypt: first come first
// served, except that a waiter from an address with no check running goes
// before one from an address that has one (per-source fairness).
type bcryptPool struct {
	mu      sync.Mutex
	free    int
	queue   []*bcryptWaiter
	pending map[string]int // per source: waiting and hashing
	hashing map[string]int // per source: hashing
}

type bcryptWaiter struct {
	src     string
	conn    net.Conn
	ready   chan struct{} // closed when granted or gone is set
	granted bool
	gone    bool
}

var passwordChecks = &bcryptPool{free: bcryptWorkers, pending: map[string]int{}, hashing: map[string]int{}}

// errBusy: no password check within bcryptWait, or too many waiting.
var errBusy = fmt.Errorf("%w: PLAIN: too many password checks waiting, try again", ErrThrottled)

// errGone: the peer hung up before its password was checked.
var errGone = fmt.Errorf("%w: PLAIN: the peer left before its password was checked", ErrHandshake)

// acquire waits for a worker for conn's peer (conn may be nil). On nil
// error the caller hashes, then calls release(src).
func (q *bcryptPool) acquire(conn net.Conn) (src string, err error) {
	src = sourceOf(conn)
	q.mu.Lock()
	if q.free > 0 && len(q.queue) == 0 {
		q.grantLocked(src)
		q.mu.Unlock()
		return src, nil
	}
	if len(q.queue) >= bcryptQueue || q.pending[src] >= bcryptPerSource {
		q.dropGoneLocked()
		if len(q.queue) >= bcryptQueue || q.pending[src] >= bcryptPerSource {
			q.mu.Unlock()
			return src, errBusy
		}
	}
	w := &bcryptWaiter{src: src, conn: conn, ready: make(chan struct{})}
	q.queue = append(q.queue, w)
	q.pending[src]++
	q.mu.Unlock()

	t := time.NewTimer(bcryptWait)
	defer t.Stop()
	select {
	case <-w.ready:
	case <-t.C:
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case w.granted:
		return src, nil
	case w.gone:
		return src, errGone
	}
	q.removeLocked(w)
	return src, errBusy
}

// grantLocked gives a worker to src.
func (q *bcryptPool) grantLocked(src string) {
	q.free--
	q.hashing[src]++
	q.pending[src]++
}

// release gives back src's worker and hands it to the next waiter.
func (q *bcryptPool) release(src string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.free++
	q.decLocked(q.hashing, src)
	q.decLocked(q.pending, src)
	for q.free > 0 && len(q.queue) > 0 {
		i := 0
		for j, w := range q.queue {
			if q.hashing[w.src] == 0 {
				i = j
				break
			}
		}
		w := q.queue[i]
		q.queue = append(q.queue[:i], q.queue[i+1:]...)
		q.decLocked(q.pending, w.src)
		q.grantLocked(w.src)
		w.granted = true
		close(w.ready)
	}
}

func (q *bcryptPool) decLocked(m map[string]int, src string) {
	if m[src]--; m[src] <= 0 {
		delete(m, src)
	}
}

func (q *bcryptPool) removeLocked(w *bcryptWaiter) {
	for i, x := range q.queue {
		if x == w {
			q.queue = append(q.queue[:i], q.queue[i+1:]...)
			q.decLocked(q.pending, w.src)
			return
		}
	}
}

// dropGoneLocked removes the waiters whose peer has hung up (a flood that
// closes each connection right after its HELLO leaves many).
func (q *bcryptPool) dropGoneLocked() {
	kept := q.queue[:0]
	for _, w := range q.queue {
		if w.conn != nil && peerGone(w.conn) {
			q.decLocked(q.pending, w.src)
			w.gone = true
			close(w.ready)
			continue
		}
		kept = append(kept, w)
	}
	clear(q.queue[len(kept):])
	q.queue = kept
}

// liveSet is the authenticated connections of an allow-list or user list,
// so that a reload closes those no longer allowed (as nats-server does on
// a configuration reload; libzmq has no reload). Each is removed when
// closed.
type liveSet struct {
	mu    sync.Mutex
	conns map[*liveConn]struct{}
}

// liveConn is a session's connection, registered in a liveSet until it is
// closed. who is the key or user name; hash, for PLAIN, the hash the
// password was checked against.
type liveConn struct {
	net.Conn
	set  *liveSet
	who  string
	hash string
	once sync.Once
}

func (l *liveConn) Close() error {
	l.once.Do(func() { l.set.remove(l) })
	return l.Conn.Close()
}

// liveTCPConn is a liveConn over TCP: it keeps SyscallConn, which the
// transport's direct writes use.
type liveTCPConn struct{ *liveConn }

func (l liveTCPConn) SyscallConn() (syscall.RawConn, error) {
	return l.Conn.(*net.TCPConn).SyscallConn()
}

// testHookBeforeTrack, when set by a test, runs between a handshake's
// credential check and its session's registration.
var testHookBeforeTrack func()

// add registers conn and returns what the session uses instead of it.
func (s *liveSet) add(conn net.Conn, who, hash string) (*liveConn, net.Conn) {
	if testHookBeforeTrack != nil {
		testHookBeforeTrack()
	}
	l := &liveConn{Conn: conn, set: s, who: who, hash: hash}
	s.mu.Lock()
	if s.conns == nil {
		s.conns = make(map[*liveConn]struct{})
	}
	s.conns[l] = struct{}{}
	s.mu.Unlock()
	if _, ok := conn.(*net.TCPConn); ok {
		return l, liveTCPConn{l}
	}
	return l, l
}

func (s *liveSet) remove(l *liveConn) {
	s.mu.Lock()
	delete(s.conns, l)
	s.mu.Unlock()
}

// closeIf closes every connection for which revoked is true and returns
// how many.
func (s *liveSet) closeIf(revoked func(l *liveConn) bool) int {
	s.mu.Lock()
	var victims []*liveConn
	for l := range s.conns {
		if revoked(l) {
			victims = append(victims, l)
		}
	}
	s.mu.Unlock()
	for _, l := range victims {
		l.Close()
	}
	return len(victims)
}

// Len is the number of live connections.
func (s *liveSet) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}
