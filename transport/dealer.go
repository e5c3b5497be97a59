package transport

import (
	"sync"
	"sync/atomic"

	"github.com/go-zeromq/zmq4"
)

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

// Dealer is a connecting DEALER socket: it sends each message to one
// connected peer, round-robin, skipping peers at their high-water mark,
// and receives from all peers fair-queued (each peer's reader delivers its
// own batches). Lost connections are redialled with capped exponential
// backoff.
type Dealer struct {
	s      *socket
	active peerSet
	rr     atomic.Uint32
}

// NewDealer makes a DEALER socket; Connect starts it.
func NewDealer(opts Options) *Dealer {
	d := &Dealer{}
	d.s = newSocket(zmq4.Dealer, opts, d)
	return d
}

// Connect keeps a connection to endpoint up until Close or Disconnect.
// Connecting twice to one endpoint keeps one connection.
func (d *Dealer) Connect(endpoint string) error { return d.s.connect(endpoint) }

// Disconnect closes the connection to endpoint and stops redialling it.
func (d *Dealer) Disconnect(endpoint string) error { return d.s.disconnect(endpoint) }

// Close closes every connection and waits for the socket's goroutines.
func (d *Dealer) Close() error { return d.s.close() }

// Stats are the socket's counters.
func (d *Dealer) Stats() *Stats { return d.s.opts.Stats }

// Connected is the number of peers connected now.
func (d *Dealer) Connected() int { return len(d.active.load()) }

// Send queues head+tail to the next connected peer that has room. With no
// connected peer, or all at their high-water mark, the message is dropped
// and counted; Send never blocks.
func (d *Dealer) Send(head, tail [][]byte) bool {
	peers := d.active.load()
	st := d.s.opts.Stats
	if len(peers) == 0 {
		st.DroppedUnknownIdentity.Add(1)
		return false
	}
	start := int(d.rr.Add(1))
	for i := range peers {
		if peers[(start+i)%len(peers)].send(head, tail) {
			st.Sent.Add(1)
			return true
		}
	}
	st.DroppedHWM.Add(1)
	return false
}

func (d *Dealer) attach(p *peer, meta zmq4.Metadata) error {
	p.id = []byte(meta["Identity"])
	d.active.add(p)
	return nil
}

func (d *Dealer) detach(p *peer) { d.active.remove(p) }

func (d *Dealer) recv(_ *peer, b *Batch) {
	if d.s.opts.OnBatch == nil {
		b.Release()
		return
	}
	d.s.opts.OnBatch(b)
}

// Sub is a connecting SUB socket. Its subscriptions are sent to every
// publisher it connects to, again after every reconnect.
type Sub struct {
	s      *socket
	active peerSet

	mu     sync.Mutex // guards topics and the sending of subscriptions
	topics map[string]int
}

// NewSub makes a SUB socket; Connect starts it.
func NewSub(opts Options) *Sub {
	sb := &Sub{topics: make(map[string]int)}
	sb.s = newSocket(zmq4.Sub, opts, sb)
	return sb
}

// Connect keeps a connection to endpoint up until Close or Disconnect.
// Connecting twice to one endpoint keeps one connection.
func (sb *Sub) Connect(endpoint string) error { return sb.s.connect(endpoint) }

// Disconnect closes the connection to endpoint and stops redialling it.
func (sb *Sub) Disconnect(endpoint string) error { return sb.s.disconnect(endpoint) }

// Endpoints lists the endpoints the socket keeps connections to.
func (sb *Sub) Endpoints() []string { return sb.s.endpoints() }

// Close closes every connection and waits for the socket's goroutines.
func (sb *Sub) Close() error { return sb.s.close() }

// Stats are the socket's counters.
func (sb *Sub) Stats() *Stats { return sb.s.opts.Stats }

// Connected is the number of publishers connected now.
func (sb *Sub) Connected() int { return len(sb.active.load()) }

// Subscribe adds a topic prefix ("" = everything).
func (sb *Sub) Subscribe(topic []byte) { sb.change(1, topic) }

// Unsubscribe cancels one Subscribe of topic.
func (sb *Sub) Unsubscribe(topic []byte) { sb.change(0, topic) }

func (sb *Sub) change(op byte, topic []byte) {
	sb.mu.Lock()
	defer sb.mu.Unlock()
	if op == 1 {
		sb.topics[string(topic)]++
	} else if n := sb.topics[string(topic)]; n <= 1 {
		delete(sb.topics, string(topic))
	} else {
		sb.topics[string(topic)] = n - 1
	}
	msg := [][]byte{append([]byte{op}, topic...)}
	for _, p := range sb.active.load() {
		p.sendControl(msg)
	}
}

func (sb *Sub) attach(p *peer, meta zmq4.Metadata) error {
	p.id = []byte(meta["Identity"])
	sb.mu.Lock()
	defer sb.mu.Unlock()
	for t, n := range sb.topics {
		msg := [][]byte{append([]byte{1}, t...)}
		for range n {
			p.sendControl(msg)
		}
	}
	sb.active.add(p)
	return nil
}

func (sb *Sub) detach(p *peer) { sb.active.remove(p) }

func (sb *Sub) recv(_ *peer, b *Batch) {
	if sb.s.opts.OnBatch == nil {
		b.Release()
		return
	}
	sb.s.opts.OnBatch(b)
}
