package actors

import (
	"github.com/asynkron/protoactor-go/actor"

	"github.com/zmq-proxy/zmq-proxy/transport"
)

// deliverKind says what a socket actor must do with a delivered batch.
type deliverKind uint8

const (
	deliverDirect    deliverKind = iota // send direct types on this ROUTER, to their routing key
	deliverFanout                       // publish fanout types on this PUB
	deliverAck                          // ACK fanout types to their senders on this ROUTER
	deliverRepublish                    // publish every message unchanged (local proxy)
	deliverNack                         // NACK the marked messages to their senders on this ROUTER
)

// deliver hands one read burst to a socket actor: one mailbox message per
// burst, never one per envelope. The envelopes were parsed once, where
// the burst was read (routerActor.route); the receiver reads them back
// (Batch.Envelope), sends the ones it is concerned with, and releases the
// batch.
type deliver struct {
	kind  deliverKind
	batch *transport.Batch
	// routed marks the fanout messages routed like direct types, decided
	// once where the burst was read (routesFanout); nil: none. For
	// deliverNack it marks the messages to NACK.
	routed routedSet
}

// mine reports whether message i of the batch, whose envelope's type is
// t, is the receiver's to send: for deliverDirect the direct types and
// the fanouts routed like them; for deliverFanout and deliverAck the
// fanouts published (to publish, or to ACK).
func (d *deliver) mine(i int, t transport.MsgType) bool {
	if d.kind == deliverNack {
		return d.routed.has(i)
	}
	published := t.IsFanout() && !d.routed.has(i)
	return published == (d.kind != deliverDirect)
}

// count is how many of the batch's messages the receiver would send.
func (d *deliver) count() int {
	if d.kind == deliverRepublish {
		return len(d.batch.Msgs)
	}
	n := 0
	for i := range d.batch.Msgs {
		if env, ok := d.batch.Envelope(i); ok && d.mine(i, env.Type) {
			n++
		}
	}
	return n
}

// stopAccepting tells a socket actor to close its listener (a drain); the
// actor closes done when it has.
type stopAccepting struct{ done chan struct{} }

// socketFailed tells a socket actor that its socket broke for good; the
// actor fails, and its supervisor restarts it.
type socketFailed struct{ err error }

// failureTo is a socket's OnError: it tells the owning actor, which fails
// (its supervisor then restarts it on the same address).
func failureTo(root *actor.RootContext, self *actor.PID) func(error) {
	return func(err error) { root.Send(self, &socketFailed{err}) }
}
