package transport

import (
	"sync/atomic"

	"github.com/go-zeromq/zmq4"
)

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
