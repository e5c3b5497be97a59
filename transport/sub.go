package transport

import (
	"sync"

	"github.com/go-zeromq/zmq4"
)

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
