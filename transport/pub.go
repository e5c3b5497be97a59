package transport

import (
	"sync"
	"sync/atomic"

	"github.com/go-zeromq/zmq4"
)

// filterSnap is an immutable view of one subscriber's topic prefixes.
type filterSnap struct {
	all      bool // subscribed to "" (everything)
	prefixes []string
}

func (f *filterSnap) match(topic []byte) bool {
	if f == nil {
		return false
	}
	if f.all {
		return true
	}
	for _, p := range f.prefixes {
		if len(topic) >= len(p) && string(topic[:len(p)]) == p {
			return true
		}
	}
	return false
}

// filterRef is a subscriber's filter. Only the peer's reader goroutine
// changes counts; it publishes a new snapshot that publishers load
// without a lock.
type filterRef struct {
	snap   atomic.Pointer[filterSnap]
	counts map[string]int
	warned bool // the topic limit was logged
}

// maxTopicsPerSubscriber bounds the distinct prefixes one subscriber may
// hold, so that no peer can grow the proxy without bound by subscribing;
// a SUBSCRIBE past it is ignored (and logged once per subscriber).
const maxTopicsPerSubscriber = 10000

// apply handles one subscription message: first byte 1 = subscribe,
// 0 = cancel, then the prefix. Subscriptions are counted, as in libzmq:
// two SUBSCRIBEs to a prefix need two CANCELs. It reports whether the set
// changed and whether the message was refused for the limit.
func (f *filterRef) apply(msg []byte) (changed, refused bool) {
	if len(msg) == 0 || msg[0] > 1 {
		return false, false
	}
	if f.counts == nil {
		f.counts = make(map[string]int)
	}
	topic := msg[1:]
	n, ok := f.counts[string(topic)]
	if msg[0] == 1 {
		if !ok && len(f.counts) >= maxTopicsPerSubscriber {
			return false, true
		}
		f.counts[string(topic)] = n + 1
		return !ok, false
	}
	switch {
	case !ok:
		return false, false
	case n <= 1:
		delete(f.counts, string(topic))
		return true, false
	default:
		f.counts[string(topic)] = n - 1
		return false, false
	}
}

// publish makes the current prefixes visible to publishers.
func (f *filterRef) publish() {
	snap := &filterSnap{prefixes: make([]string, 0, len(f.counts))}
	for t := range f.counts {
		if t == "" {
			snap.all = true
		}
		snap.prefixes = append(snap.prefixes, t)
	}
	f.snap.Store(snap)
}

// update applies subscription messages and publishes the result once.
func (p *Pub) update(sub *peer, msgs ...[]byte) {
	changed, refused := false, false
	for _, m := range msgs {
		c, r := sub.filter.apply(m)
		changed, refused = changed || c, refused || r
	}
	if changed {
		sub.filter.publish()
	}
	if refused && !sub.filter.warned {
		sub.filter.warned = true
		p.s.log.Warn("subscriber has too many subscriptions, ignoring more", "identity", printable(sub.id), "limit", maxTopicsPerSubscriber)
	}
}

// Pub is a binding PUB socket: each subscriber has its own prefix filter
// and its own bounded queue, so one slow subscriber only loses its own
// messages and never holds back the others.
type Pub struct {
	s *socket

	mu   sync.Mutex // serialises changes to subs
	subs atomic.Pointer[[]*peer]
}

// NewPub makes a PUB socket; Bind starts it.
func NewPub(opts Options) *Pub {
	p := &Pub{}
	p.subs.Store(new([]*peer))
	p.s = newSocket(zmq4.Pub, opts, p)
	return p
}

// Bind listens on endpoint (tcp://host:port; port 0 = random).
func (p *Pub) Bind(endpoint string) error { return p.s.bind(endpoint) }

// Addr is the bound endpoint, tcp://host:port.
func (p *Pub) Addr() string { return p.s.addr() }

// Close closes every connection and waits for the socket's goroutines.
func (p *Pub) Close() error { return p.s.close() }

// Stats are the socket's counters.
func (p *Pub) Stats() *Stats { return p.s.opts.Stats }

// Subscribers is the number of connected subscribers.
func (p *Pub) Subscribers() int { return len(*p.subs.Load()) }

// Publish queues head+tail to every subscriber whose filter matches the
// first frame. A subscriber at its high-water mark misses the message
// (counted); Publish never blocks. It returns how many got it.
func (p *Pub) Publish(head, tail [][]byte) int {
	var topic []byte
	if len(head) > 0 {
		topic = head[0]
	} else if len(tail) > 0 {
		topic = tail[0]
	}
	st := p.s.opts.Stats
	st.Published.Add(1)
	sent, dropped := 0, 0
	for _, sub := range *p.subs.Load() {
		if !sub.filter.snap.Load().match(topic) {
			continue
		}
		if sub.send(head, tail) {
			sent++
		} else {
			dropped++
		}
	}
	if sent > 0 {
		st.Sent.Add(uint64(sent))
	}
	if dropped > 0 {
		st.DroppedHWM.Add(uint64(dropped))
	}
	return sent
}

func (p *Pub) attach(sub *peer, meta zmq4.Metadata) error {
	sub.id = []byte(meta["Identity"])
	p.mu.Lock()
	old := *p.subs.Load()
	next := make([]*peer, len(old), len(old)+1)
	copy(next, old)
	next = append(next, sub)
	p.subs.Store(&next)
	p.mu.Unlock()
	return nil
}

func (p *Pub) detach(sub *peer) {
	p.mu.Lock()
	old := *p.subs.Load()
	next := make([]*peer, 0, len(old))
	for _, q := range old {
		if q != sub {
			next = append(next, q)
		}
	}
	p.subs.Store(&next)
	p.mu.Unlock()
}

// recv applies subscription messages; anything else a subscriber sends is
// ignored, as libzmq's PUB does.
func (p *Pub) recv(sub *peer, b *Batch) {
	subs := make([][]byte, 0, len(b.Msgs))
	for _, m := range b.Msgs {
		if len(m) == 1 {
			subs = append(subs, m[0])
		}
	}
	p.update(sub, subs...)
	b.Release()
}

// command applies ZMTP 3.1 SUBSCRIBE and CANCEL commands.
func (p *Pub) command(sub *peer, name string, data []byte) {
	switch name {
	case "SUBSCRIBE":
		p.update(sub, append([]byte{1}, data...))
	case "CANCEL":
		p.update(sub, append([]byte{0}, data...))
	}
}
