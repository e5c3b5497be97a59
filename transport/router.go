package transport

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"sync"

	"github.com/go-zeromq/zmq4"
)

// maxIdentity is the longest identity ZMTP allows (RFC 23: a routing id
// is 1 to 255 bytes). A peer that announces a longer one is refused, and
// a message to a longer one dropped, as libzmq does.
const maxIdentity = 255

// Router is a binding ROUTER socket: peers keyed by identity, one bounded
// queue and writer each. Inbound batches carry the sender's identity in
// Batch.Peer.
type Router struct {
	s *socket

	mu     sync.RWMutex
	peers  map[string]*peer
	nextID uint32
}

// NewRouter makes a ROUTER socket; Bind starts it.
func NewRouter(opts Options) *Router {
	r := &Router{peers: make(map[string]*peer), nextID: rand.Uint32()}
	r.s = newSocket(zmq4.Router, opts, r)
	return r
}

// Bind listens on endpoint (tcp://host:port; port 0 = random).
func (r *Router) Bind(endpoint string) error { return r.s.bind(endpoint) }

// Addr is the bound endpoint, tcp://host:port.
func (r *Router) Addr() string { return r.s.addr() }

// StopAccepting closes the listener (a draining proxy takes no new peer);
// the connected peers go on until Close. Called before Bind, Bind binds
// and reports the address but accepts nothing.
func (r *Router) StopAccepting() { r.s.stopAccepting() }

// Close closes every connection and waits for the socket's goroutines.
func (r *Router) Close() error { return r.s.close() }

// Stats are the socket's counters.
func (r *Router) Stats() *Stats { return r.s.opts.Stats }

// Identity is the socket's own identity.
func (r *Router) Identity() []byte { return r.s.opts.Identity }

// Send queues the message head+tail to the peer with identity id. A
// message to an unknown identity or to a peer at its high-water mark is
// dropped and counted; Send never blocks.
func (r *Router) Send(id []byte, head, tail [][]byte) bool { return r.send(id, head, tail, false) }

// SendNow is Send for the last message of a burst: when the peer's queue
// is empty and its writer idle, the message is written at once, on the
// caller's goroutine, with one non-blocking write.
func (r *Router) SendNow(id []byte, head, tail [][]byte) bool { return r.send(id, head, tail, true) }

func (r *Router) send(id []byte, head, tail [][]byte, now bool) bool {
	st := r.s.opts.Stats
	if len(id) > maxIdentity {
		st.DroppedIdentity.Add(1)
		return false
	}
	r.mu.RLock()
	p := r.peers[string(id)]
	r.mu.RUnlock()
	if p == nil {
		st.DroppedUnknownIdentity.Add(1)
		return false
	}
	if !p.sendMsg(head, tail, now) {
		st.DroppedHWM.Add(1)
		return false
	}
	st.Sent.Add(1)
	return true
}

// Connected reports whether a peer with identity id is connected.
func (r *Router) Connected(id []byte) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.peers[string(id)] != nil
}

// attach keys the peer by the identity it announced, or a generated one
// (libzmq's form: a zero byte and a 32-bit counter). Like libzmq without
// ROUTER_HANDOVER, a second connection with an identity in use is refused.
func (r *Router) attach(p *peer, meta zmq4.Metadata) error {
	id := []byte(meta["Identity"])
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(id) > 0 && id[0] == 0 {
		return fmt.Errorf("%w: identities starting with a zero byte are reserved", ErrDuplicateIdentity)
	}
	if len(id) == 0 {
		for {
			r.nextID++
			id = binary.BigEndian.AppendUint32([]byte{0}, r.nextID)
			if r.peers[string(id)] == nil {
				break
			}
		}
	}
	p.id = id
	if r.peers[string(id)] != nil {
		return ErrDuplicateIdentity
	}
	r.peers[string(id)] = p
	return nil
}

func (r *Router) detach(p *peer) {
	r.mu.Lock()
	if r.peers[string(p.id)] == p {
		delete(r.peers, string(p.id))
	}
	r.mu.Unlock()
}

func (r *Router) recv(_ *peer, b *Batch) {
	if r.s.opts.OnBatch == nil {
		b.Release()
		return
	}
	r.s.opts.OnBatch(b)
}
