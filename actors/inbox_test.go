package actors

import (
	"testing"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
	"github.com/zmq-proxy/zmq-proxy/transport"
)

// fanoutBatch is a batch of n fanout envelopes and one cast, parsed as
// route parses a burst on its reader.
func fanoutBatch(n int) *transport.Batch {
	b := transport.NewBatch([]byte("client-1"), transport.Msg(envelope("2", "server-1", "c", "x")))
	for range n {
		b.Msgs = append(b.Msgs, transport.Msg(envelope("3", "topic", "f", "x")))
	}
	for i := range b.Msgs {
		if _, err := b.Parse(i); err != nil {
			panic(err)
		}
	}
	return b
}

// What is posted to an inbox that is down is released at once and its
// messages of the receiver's kind counted; what waited when the inbox
// went down is released then, and the actor skips it afterwards.
func TestInboxDownDropsAndCounts(t *testing.T) {
	system := newActorSystem(testutil.Quiet()) // a short dead-letter throttle, which goleak waits out
	defer system.Shutdown()
	st := new(transport.Stats)
	in := newInbox(system.NewLocalPID("nobody"), st)

	waiting := &deliver{kind: deliverFanout, batch: fanoutBatch(2)}
	in.post(system.Root, waiting) // to a PID that does not run: it waits
	in.setDown()
	if got := st.DroppedRestarting.Load(); got != 2 {
		t.Fatalf("after setDown: DroppedRestarting got %d, want the 2 fanouts that waited", got)
	}
	if in.take(waiting) {
		t.Fatal("take of a delivery released by setDown: got true, want false (the actor skips it)")
	}

	in.post(system.Root, &deliver{kind: deliverDirect, batch: fanoutBatch(3)})
	if got := st.DroppedRestarting.Load(); got != 3 {
		t.Fatalf("after a post while down: DroppedRestarting got %d, want 3 (2 + the one cast)", got)
	}
	if n := len(in.pending); n != 0 {
		t.Fatalf("pending after the drops: got %d, want 0", n)
	}

	in.setUp()
	d := &deliver{kind: deliverFanout, batch: fanoutBatch(1)}
	in.post(system.Root, d)
	if !in.take(d) {
		t.Fatal("take of a delivery posted while up: got false, want true")
	}
	d.batch.Release()
	if got := st.DroppedRestarting.Load(); got != 3 {
		t.Fatalf("after a post while up: DroppedRestarting got %d, want still 3", got)
	}
}

// A delivery counts the messages its receiver would send: a fanout routed
// like a direct type counts for the ROUTER's actor, not for the
// publisher's (it is dropped as restarting by the one that would send it).
func TestDeliverCountsRouted(t *testing.T) {
	b := fanoutBatch(3) // a cast, then three fanouts
	var routed routedSet
	routed = routed.mark(1, len(b.Msgs)) // the first fanout is routed
	for _, c := range []struct {
		kind deliverKind
		want int
	}{{deliverDirect, 2}, {deliverFanout, 2}, {deliverAck, 2}, {deliverRepublish, 4}} {
		if got := (&deliver{kind: c.kind, batch: b, routed: routed}).count(); got != c.want {
			t.Errorf("kind %d: count %d, want %d", c.kind, got, c.want)
		}
	}
	b.Release()
}
