package transport

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-zeromq/zmq4"
)

// Limits on what one subscriber may subscribe to, so that no peer can
// grow the proxy without bound by subscribing: distinct prefixes, and
// their bytes in all. A SUBSCRIBE past either is ignored (and logged, at
// most once a minute per socket).
const (
	maxTopicsPerSubscriber     = 10000
	maxTopicBytesPerSubscriber = 1 << 20
)

// Defaults of the limits on what all the subscribers of one PUB hold
// together (Options.MaxTopics, Options.MaxTopicBytes): without them, 50
// subscribers each at their own limit held 500,000 prefixes, 341 MiB. A
// prefix costs the proxy about 400 bytes beside its own bytes (twice:
// the subscriber's count and the trie's label), so these hold about
// 40 MiB at most. libzmq and nats-server bound neither (nats-server
// bounds a client's subscriptions, max_subs, per account).
const (
	defaultMaxTopics     = 100000
	defaultMaxTopicBytes = 4 << 20
)

// subBudget is what every subscriber of one PUB holds together, against
// its limits; under Pub.mu.
type subBudget struct {
	topics, bytes       int
	maxTopics, maxBytes int
}

// fits reports whether a new prefix of n bytes fits.
func (b *subBudget) fits(n int) bool {
	return b == nil || b.topics < b.maxTopics && b.bytes+n <= b.maxBytes
}

func (b *subBudget) add(topics, bytes int) {
	if b != nil {
		b.topics += topics
		b.bytes += bytes
	}
}

// filterRef is one subscriber's subscriptions, counted as in libzmq (two
// SUBSCRIBEs to a prefix need two CANCELs). Only the subscriber's
// connection goroutine touches it; what publishers read is the Pub's
// trie.
type filterRef struct {
	counts map[string]int
	bytes  int // sum of the distinct prefixes' lengths
}

// apply handles one subscription message: first byte 1 = subscribe,
// 0 = cancel, then the prefix. It reports whether the prefix entered
// (+1) or left (-1) the set, or neither (0), and whether the message was
// refused for a limit.
func (f *filterRef) apply(msg []byte) (change int, refused bool) { return f.applyWithin(msg, nil) }

// applyWithin is apply within the limits of what all subscribers hold
// (nil: none), which it keeps up to date.
func (f *filterRef) applyWithin(msg []byte, all *subBudget) (change int, refused bool) {
	if len(msg) == 0 || msg[0] > 1 {
		return 0, false
	}
	if f.counts == nil {
		f.counts = make(map[string]int)
	}
	topic := msg[1:]
	n, ok := f.counts[string(topic)]
	if msg[0] == 1 {
		if !ok && (len(f.counts) >= maxTopicsPerSubscriber || f.bytes+len(topic) > maxTopicBytesPerSubscriber || !all.fits(len(topic))) {
			return 0, true
		}
		f.counts[string(topic)] = n + 1
		if ok {
			return 0, false
		}
		f.bytes += len(topic)
		all.add(1, len(topic))
		return 1, false
	}
	switch {
	case !ok:
		return 0, false
	case n <= 1:
		delete(f.counts, string(topic))
		f.bytes -= len(topic)
		all.add(-1, -len(topic))
		return -1, false
	default:
		f.counts[string(topic)] = n - 1
		return 0, false
	}
}

// Pub is a binding PUB socket: each subscriber has its own bounded queue,
// so one slow subscriber only loses its own messages and never holds back
// the others. Every subscriber's prefixes live in one trie, so a publish
// costs what its topic matches, not what every subscriber holds.
type Pub struct {
	s    *socket
	subs peerSet

	mu     sync.Mutex // serialises changes to trie, and guards budget
	trie   atomic.Pointer[trie]
	budget subBudget // what every subscriber holds together

	pubMu sync.Mutex // serialises Publish: guards gen and every peer's seen
	gen   uint64
}

// NewPub makes a PUB socket; Bind starts it.
func NewPub(opts Options) *Pub {
	p := &Pub{}
	p.s = newSocket(zmq4.Pub, opts, p)
	p.budget.maxTopics, p.budget.maxBytes = p.s.opts.MaxTopics, p.s.opts.MaxTopicBytes
	return p
}

// Bind listens on endpoint (tcp://host:port; port 0 = random).
func (p *Pub) Bind(endpoint string) error { return p.s.bind(endpoint) }

// Addr is the bound endpoint, tcp://host:port.
func (p *Pub) Addr() string { return p.s.addr() }

// StopAccepting closes the listener (a draining proxy takes no new
// subscriber); the connected ones go on until Close. Called before Bind,
// Bind binds and reports the address but accepts nothing.
func (p *Pub) StopAccepting() { p.s.stopAccepting() }

// Close closes every connection and waits for the socket's goroutines.
func (p *Pub) Close() error { return p.s.close() }

// Stats are the socket's counters.
func (p *Pub) Stats() *Stats { return p.s.opts.Stats }

// Subscribers is the number of connected subscribers.
func (p *Pub) Subscribers() int { return len(p.subs.load()) }

// Publish queues head+tail to every subscriber with a prefix of the first
// frame. A subscriber at its high-water mark misses the message (counted);
// Publish never blocks. It returns how many got it.
func (p *Pub) Publish(head, tail [][]byte) int { return p.publish(head, tail, false) }

// PublishNow is Publish for the last message of a burst: each matching
// subscriber whose queue is empty and writer idle gets it written at once,
// on the caller's goroutine.
func (p *Pub) PublishNow(head, tail [][]byte) int { return p.publish(head, tail, true) }

func (p *Pub) publish(head, tail [][]byte, now bool) int {
	var topic []byte
	if len(head) > 0 {
		topic = head[0]
	} else if len(tail) > 0 {
		topic = tail[0]
	}
	st := p.s.opts.Stats
	st.Published.Add(1)
	sent, dropped := 0, 0
	p.pubMu.Lock()
	p.gen++
	gen := p.gen
	p.trie.Load().match(topic, func(sub *peer) {
		if sub.seen == gen {
			return // it holds a shorter prefix of the topic too
		}
		sub.seen = gen
		if sub.sendMsg(head, tail, now) {
			sent++
		} else {
			dropped++
		}
	})
	p.pubMu.Unlock()
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
	p.subs.add(sub)
	return nil
}

// detach removes the subscriber and its prefixes. It runs on the
// subscriber's connection goroutine after its reader ended, so its
// filter no longer changes.
func (p *Pub) detach(sub *peer) {
	p.subs.remove(sub)
	p.mu.Lock()
	t := p.trie.Load()
	for prefix := range sub.filter.counts {
		t = t.with([]byte(prefix), sub, false, true)
	}
	p.trie.Store(t)
	p.budget.add(-len(sub.filter.counts), -sub.filter.bytes)
	p.mu.Unlock()
	sub.filter = filterRef{}
}

// update applies subscription messages from sub, on its connection
// goroutine, and publishes the new trie once.
func (p *Pub) update(sub *peer, msgs ...[]byte) {
	refused := false
	p.mu.Lock()
	t := p.trie.Load()
	changed := false
	for _, m := range msgs {
		c, r := sub.filter.applyWithin(m, &p.budget)
		refused = refused || r
		if c != 0 {
			t, changed = t.with(m[1:], sub, m[0] == 1, true), true
		}
	}
	if changed {
		p.trie.Store(t)
	}
	all := p.budget
	p.mu.Unlock()
	if refused {
		n := p.s.opts.Stats.RefusedTopics.Add(1)
		if p.s.warn.topics.Allow(time.Now()) {
			p.s.log.Warn("too many subscriptions, ignoring more", "identity", printable(sub.id),
				"limit", maxTopicsPerSubscriber, "limit_bytes", maxTopicBytesPerSubscriber,
				"all_subscribers", all.topics, "all_subscribers_bytes", all.bytes,
				"limit_all", all.maxTopics, "limit_all_bytes", all.maxBytes, "refused_total", n)
		}
	}
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
