package actors

import (
	"sync"
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/zmq-proxy/zmq-proxy/transport"
)

// inbox is the way into a socket actor's mailbox for the batches other
// actors' readers deliver to it. A batch holds a read buffer and one of
// its reader's in-flight slots until every holder releases it, so a
// batch that waits in a mailbox that does not run (the actor failed and
// waits out its restart backoff, or it stopped) would stop that reader,
// and with it every other actor the reader feeds. The inbox prevents that:
// while the actor is down, what is delivered to it is released at once
// and counted as dropped (reason "restarting"); when it goes down, what
// waits in its mailbox is released at once, and the actor skips it when
// it runs again.
type inbox struct {
	pid   *actor.PID
	stats *transport.Stats // where the drops are counted

	down    atomic.Bool
	mu      sync.Mutex
	pending map[*deliver]struct{} // posted, not yet taken or released
}

func newInbox(pid *actor.PID, stats *transport.Stats) *inbox {
	return &inbox{pid: pid, stats: stats, pending: make(map[*deliver]struct{})}
}

// post delivers d to the actor, or releases it if the actor is down.
func (in *inbox) post(root *actor.RootContext, d *deliver) {
	in.mu.Lock()
	in.pending[d] = struct{}{}
	in.mu.Unlock()
	if in.down.Load() {
		// Gone down between: whichever of us and setDown claims d first
		// releases it.
		in.drop(d)
		return
	}
	root.Send(in.pid, d)
}

// take is the actor's side: it reports whether d is still to be handled
// (false if it was released while the actor was down).
func (in *inbox) take(d *deliver) bool {
	in.mu.Lock()
	_, ok := in.pending[d]
	delete(in.pending, d)
	in.mu.Unlock()
	return ok
}

// drop releases d if nobody has taken it yet, and counts its messages.
func (in *inbox) drop(d *deliver) {
	if !in.take(d) {
		return
	}
	in.stats.DroppedRestarting.Add(uint64(d.count()))
	d.batch.Release()
}

// setDown marks the actor down (failed, stopping) and releases what waits
// for it. Called by the supervisor's strategy when the actor fails, and by
// the actor when it stops.
func (in *inbox) setDown() {
	in.down.Store(true)
	in.mu.Lock()
	waiting := make([]*deliver, 0, len(in.pending))
	for d := range in.pending {
		waiting = append(waiting, d)
	}
	in.mu.Unlock()
	for _, d := range waiting {
		in.drop(d)
	}
}

// setUp marks the actor running again (its Started).
func (in *inbox) setUp() { in.down.Store(false) }
