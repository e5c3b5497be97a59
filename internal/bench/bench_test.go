package bench

import (
	"slices"
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
	m := &rpc.Message{MessageID: "id-1", Args: benchArgs(70000, benchNow(), "xx")} // past the first chunk
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
		if got, ok := seqOf(benchArgs(n, 5, "xyz")); !ok || got != n {
			t.Errorf("seqOf(benchArgs(%d)): got %d, %v", n, got, ok)
		}
	}
	for _, a := range []string{``, `{}`, `{"seq": }`, `{"seq": x, "data": ""}`, `{"data": "", "seq": 1}`} {
		if n, ok := seqOf([]byte(a)); ok {
			t.Errorf("seqOf(%s): got %d, want none", a, n)
		}
	}
	if got := string(benchArgs(12, 345, "ab")); got != `{"seq": 12, "sent_ns": 345, "data": "ab"}` {
		t.Errorf("benchArgs: got %s", got)
	}
	for _, ns := range []int64{0, 1, 1 << 50} {
		if got, ok := sentOf(benchArgs(7, ns, "x")); !ok || got != ns {
			t.Errorf("sentOf(benchArgs(7, %d)): got %d, %v", ns, got, ok)
		}
	}
	if ns, ok := sentOf([]byte(`{"seq": 1, "data": ""}`)); ok {
		t.Errorf("sentOf without sent_ns: got %d", ns)
	}
}

// Delivery latency is taken at a server's first run of a message, from
// the time carried in it: a duplicate adds nothing, and the percentiles
// read back what was recorded.
func TestBenchDeliveryLatency(t *testing.T) {
	tl := newTally(1, nil)
	m := &rpc.Message{MessageID: "id-1", Args: benchArgs(3, benchNow()-int64(40*time.Millisecond), "x")}
	tl.add(0, m)
	tl.add(0, m) // a duplicate
	if n := tl.delivery.n.Load(); n != 1 {
		t.Fatalf("%d latencies recorded for one message run twice, want 1", n)
	}
	if p := tl.delivery.pct(0.5); p < 40_000 || p > 40_000+10_000_000 {
		t.Fatalf("delivery latency %.0fµs, want at least the 40 ms it was sent before", p)
	}
}

// The histogram's buckets are exact below 1024 µs and within 0.2% above;
// its percentiles are those of the sorted values.
func TestLatHist(t *testing.T) {
	var h latHist
	var vals []time.Duration
	for i := range 10_000 {
		d := time.Duration(i*i%5_000_000) * time.Microsecond / 7
		vals = append(vals, d)
		h.record(d)
	}
	slices.Sort(vals)
	for _, p := range []float64{0, 0.5, 0.9, 0.99, 0.999, 1} {
		want, got := pct(vals, p), h.pct(p)
		if got > want || got < want*0.998-1 {
			t.Errorf("p%v: histogram %.0fµs, sorted values %.0fµs", p*100, got, want)
		}
	}
	for _, us := range []uint64{0, 1023, 1024, 1025, 99_999, 1 << 40, 1<<63 + 5} {
		i := histIndex(us)
		if v := histValue(i); v > us || (us >= 1024 && float64(us-v) > float64(us)*0.002) || (us < 1024 && v != us) {
			t.Errorf("%dµs: bucket %d starts at %d", us, i, v)
		}
		if i >= histBuckets {
			t.Errorf("%dµs: bucket %d past the last", us, i)
		}
	}
}
