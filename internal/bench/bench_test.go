package bench

import (
	"testing"
	"time"

	"github.com/zmq-proxy/zmq-proxy/rpc"
)

// The window frees a place per first handler run, not per duplicate; a
// window that stays full with nothing handled is emptied after the
// timeout, so that a lost delivery does not stop the run.
func TestBenchWindow(t *testing.T) {
	tl := newTally(2, make(chan struct{}, 4))
	stop := make(chan struct{})
	if !tl.enter(4, stop) || len(tl.window) != 4 {
		t.Fatalf("enter 4: window holds %d, want 4", len(tl.window))
	}
	m := &rpc.Message{MessageID: "id-1", Args: benchArgs(70000, "xx")} // past the first chunk
	tl.add(0, m)
	tl.add(0, m)                                                    // a duplicate frees nothing
	tl.add(1, m)                                                    // another server's first run does
	tl.add(0, &rpc.Message{MessageID: "probe", Args: []byte(`{}`)}) // no seq: counted by id
	if len(tl.window) != 1 || tl.distinct() != 3 || tl.all.Load() != 4 {
		t.Fatalf("after 4 runs (3 first): window %d, distinct %d, all %d; want 1, 3, 4", len(tl.window), tl.distinct(), tl.all.Load())
	}
	tl.enter(3, stop)     // full again
	tl.unstall(time.Hour) // sees the runs above move: the wait starts now
	if tl.unstall(time.Hour) {
		t.Fatal("unstall emptied a full window before the timeout")
	}
	if !tl.unstall(0) || len(tl.window) != 0 {
		t.Fatalf("unstall after the timeout: window holds %d, want 0", len(tl.window))
	}
	tl.enter(4, stop)
	close(stop)
	if tl.enter(1, stop) {
		t.Fatal("enter on a full window after stop: got true, want false")
	}
}

// The seq that benchArgs writes is read back; arguments without one are
// told apart.
func TestBenchSeq(t *testing.T) {
	for _, n := range []uint64{0, 1, 65535, 1 << 40} {
		if got, ok := seqOf(benchArgs(n, "xyz")); !ok || got != n {
			t.Errorf("seqOf(benchArgs(%d)): got %d, %v", n, got, ok)
		}
	}
	for _, a := range []string{``, `{}`, `{"seq": }`, `{"seq": x, "data": ""}`, `{"data": "", "seq": 1}`} {
		if n, ok := seqOf([]byte(a)); ok {
			t.Errorf("seqOf(%s): got %d, want none", a, n)
		}
	}
	if got := string(benchArgs(12, "ab")); got != `{"seq": 12, "data": "ab"}` {
		t.Errorf("benchArgs: got %s", got)
	}
}
