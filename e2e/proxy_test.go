package e2e

import (
	"fmt"
	"os"
	"syscall"
	"testing"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
)

// Metric names (see the proxy's /metrics).
const (
	received  = "zmqproxy_messages_received_total"
	routed    = "zmqproxy_messages_routed_total"
	published = "zmqproxy_messages_published_total"
	peers     = "zmqproxy_peers_connected"
)

func atLeast(n float64) (func(float64) bool, string) {
	return func(v float64) bool { return v >= n }, fmt.Sprintf(">= %v", n)
}

// waitAtLeast waits until the metric is at least n.
func (p *proxy) waitAtLeast(t *testing.T, n float64, name string, labels ...string) float64 {
	t.Helper()
	cond, want := atLeast(n)
	return p.waitMetric(t, cond, want, name, labels...)
}

// noDropsBut fails the test if a drop counter other than those of the
// given reasons rose since before.
func (p *proxy) noDropsBut(t *testing.T, before counters, reasons ...string) {
	t.Helper()
	d := p.drops(t).diff(before)
	for _, r := range reasons {
		for k := range d {
			if k[1] == r {
				delete(d, k)
			}
		}
	}
	if len(d) > 0 {
		t.Errorf("drops since the start: %v, want none", d)
	}
}

func TestCallReplyByteExact(t *testing.T) {
	p := startProxy(t, proxyOpts{})
	// A call, a payload-less cast and a fanout in; a reply and an ACK back.
	callReplyCounted(t, p, []socketCount{
		{3, received, "frontend"},
		{2, routed, "backend"},
		{2, received, "backend"},
		{2, routed, "frontend"},
		{1, published, "publisher"},
	})
}

// socketCount is a counter of one socket and its least value.
type socketCount struct {
	n            float64
	name, socket string
}

// callReplyCounted runs call_reply.py through p, which must stay alive,
// and, where p has metrics, waits until each counter of want has its
// least value and checks that nothing was dropped but warm-up probes sent
// before the server connected.
func callReplyCounted(t *testing.T, p *proxy, want []socketCount) {
	t.Helper()
	runPeer(t, "call_reply.py", p.peerArgs()...)
	p.alive(t)
	if skipMetrics(t, p) {
		return
	}
	for _, c := range want {
		p.waitAtLeast(t, c.n, c.name, "socket", c.socket)
	}
	p.noDropsBut(t, counters{}, "unknown_identity")
}

func TestCastRoutedByKey(t *testing.T) {
	const count = 1000
	p := startProxy(t, proxyOpts{})
	peer := startPeer(t, "cast_many.py", append(p.peerArgs(), "--count", fmt.Sprint(count))...)
	peer.awaitStep(t, "warm", nil)
	var before counters
	var recv0, routed0 float64
	if p.hasMetrics() {
		before = p.drops(t)
		recv0 = p.metric(t, received, "socket", "frontend")
		routed0 = p.metric(t, routed, "socket", "backend")
	}
	peer.proceed(t)
	res := peer.result(t)
	if got := res["received"]; got != float64(count) {
		t.Errorf("casts received: got %v, want %d", got, count)
	}
	p.alive(t)
	if skipMetrics(t, p) {
		return
	}
	p.waitAtLeast(t, recv0+count, received, "socket", "frontend")
	p.waitAtLeast(t, routed0+count, routed, "socket", "backend")
	p.noDropsBut(t, before)
}

func TestFanoutPrefixFilters(t *testing.T) {
	p := startProxy(t, proxyOpts{})
	peer := startPeer(t, "fanout_filters.py", p.peerArgs()...)
	peer.awaitStep(t, "warm", nil)
	var before counters
	var pub0 float64
	if p.hasMetrics() {
		before = p.drops(t)
		pub0 = p.metric(t, published, "socket", "publisher")
	}
	peer.proceed(t)
	res := peer.result(t)
	p.alive(t)
	if skipMetrics(t, p) {
		return
	}
	n, _ := res["published"].(float64)
	p.waitAtLeast(t, pub0+n, published, "socket", "publisher")
	p.noDropsBut(t, before)
}

func TestFanoutAck(t *testing.T) {
	p := startProxy(t, proxyOpts{ack: true})
	res := runPeer(t, "fanout_ack.py", p.peerArgs()...)
	if id, _ := res["fe_identity"].(string); id == "" {
		t.Errorf("frontend identity in the ACKs: got %q, want non-empty", id)
	} else if p.feID != "" && id != p.feID {
		t.Errorf("frontend identity in the ACKs: got %q, want %q", id, p.feID)
	}
	p.alive(t)
	if skipMetrics(t, p) {
		return
	}
	acks, _ := res["acks"].(float64)
	p.waitAtLeast(t, acks, published, "socket", "publisher")
	p.noDropsBut(t, counters{}, "unknown_identity")
}

func TestSingleRouter(t *testing.T) {
	p := startProxy(t, proxyOpts{single: true})
	if p.backend != "" {
		t.Fatalf("single-router proxy has a backend %q", p.backend)
	}
	// With no backend the script connects the server to the frontend too:
	// call, cast, fanout, reply and ACK all come in on the frontend; call,
	// cast, reply and ACK go out on it.
	callReplyCounted(t, p, []socketCount{
		{5, received, "frontend"},
		{4, routed, "frontend"},
		{1, published, "publisher"},
	})
}

func TestBadInputDropped(t *testing.T) {
	p := startProxy(t, proxyOpts{})
	peer := startPeer(t, "bad_input.py", p.peerArgs()...)
	peer.awaitStep(t, "warm", nil)
	var before counters
	if p.hasMetrics() {
		before = p.drops(t)
	} else {
		skipMetrics(t, p)
	}
	peer.proceed(t)

	// Drops since the warm-up, cumulative, after each case. Which socket
	// counts a message for an unknown identity (the one it came in on or
	// the one it could not go out on) is left open: "any".
	fe := func(reason string) [2]string { return [2]string{"frontend", reason} }
	anyUnknown := [2]string{"any", "unknown_identity"}
	steps := []struct {
		name string
		want counters
	}{
		{"delimiter", counters{fe("malformed"): 1}},
		{"type", counters{fe("malformed"): 2}},
		{"short", counters{fe("malformed"): 3}},
		{"version", counters{fe("malformed"): 3, fe("unknown_version"): 1}},
		{"identity", counters{fe("malformed"): 3, fe("unknown_version"): 1, anyUnknown: 1}},
		{"backend-type", counters{fe("malformed"): 3, fe("unknown_version"): 1, anyUnknown: 1,
			{"backend", "malformed"}: 1}},
	}
	for _, s := range steps {
		peer.awaitStep(t, s.name, nil)
		p.alive(t)
		if p.hasMetrics() {
			testutil.CheckFor(t, metricWait, func() error {
				got := p.drops(t).diff(before)
				for k, v := range got {
					if k[1] == "unknown_identity" {
						delete(got, k)
						got[anyUnknown] += v
					}
				}
				if !equal(got, s.want) {
					return fmt.Errorf("drops after the %q case: got %v, want %v", s.name, got, s.want)
				}
				return nil
			})
		}
		peer.proceed(t)
	}
	peer.result(t)
	p.alive(t)
}

func equal(a, b counters) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// rssGrowthBound bounds how much the proxy's RSS may grow, over its size
// just after start, while a peer that does not read has floodCount messages
// of floodSize bytes (375 MiB) sent its way. A proxy that queues at most a
// high-water mark of messages per peer (1000, as libzmq) holds 16 MiB for
// the stuck peer; add the read and write buffers of the busy connections,
// the messages in flight between its actors, and the garbage collector's
// headroom (the heap may reach twice the live data before a collection):
// ours measured 65 to 105 MiB. 192 MiB leaves room for that to vary, and
// is still half of what a proxy that queued without bound would hold
// (cproxy with no high-water mark: 319 MiB for 312 MiB sent).
const (
	rssGrowthBound = 192 << 20
	floodCount     = 24000
	floodSize      = 16 << 10
)

// rssWatch samples the proxy's RSS: the first sample is the baseline.
type rssWatch struct {
	t         *testing.T
	p         *proxy
	base, max int64
	samples   int
}

func (w *rssWatch) sample() {
	r := w.p.rssBytes(w.t)
	if w.samples == 0 {
		w.base = r
	}
	w.samples++
	w.max = max(w.max, r)
}

func (w *rssWatch) check() {
	grew := w.max - w.base
	w.t.Logf("proxy RSS: %d samples, start %d MiB, max %d MiB, growth %d MiB",
		w.samples, w.base>>20, w.max>>20, grew>>20)
	if grew > rssGrowthBound {
		w.t.Errorf("proxy RSS grew by %d MiB while a peer did not read, want at most %d MiB",
			grew>>20, rssGrowthBound>>20)
	}
}

// hwmRef makes cproxy drop at a high-water mark of 1000 without blocking
// (send timeout 0), as libzmq does for a non-blocking send: its default is
// no high-water mark at all, which queues without bound.
var hwmRef = []string{"--hwm", "1000", "--sndtimeo", "0"}

func TestSlowBackendPeerDoesNotDelayOthers(t *testing.T) {
	floodPastSlowPeer(t, "slow_backend.py", func(p *proxy) {
		// The stuck peer's queue is full while it is still connected.
		p.waitMetric(t, func(v float64) bool { return v > 0 }, "> 0",
			dropped, "socket", "backend", "reason", "hwm")
	})
}

func TestSlowSubscriberDoesNotDelayOthers(t *testing.T) {
	floodPastSlowPeer(t, "slow_subscriber.py", func(p *proxy) {
		p.waitMetric(t, func(v float64) bool { return v > 0 }, "> 0",
			dropped, "socket", "publisher", "reason", "hwm")
		p.waitAtLeast(t, floodCount, published, "socket", "publisher")
	})
}

// floodPastSlowPeer runs script (floodCount messages of floodSize bytes
// past a peer that does not read) through a proxy that drops at a
// high-water mark. At the script's "flooded" step, with the slow peer
// still connected, it runs atFlooded (the metrics' checks) where the
// proxy has metrics; then the script must succeed, the proxy stay alive
// and its RSS stay within rssGrowthBound.
func floodPastSlowPeer(t *testing.T, script string, atFlooded func(p *proxy)) {
	t.Helper()
	p := startProxy(t, proxyOpts{refArgs: hwmRef, plain: true})
	w := &rssWatch{t: t, p: p}
	w.sample()
	peer := startPeer(t, script, append(p.peerArgs(),
		"--count", fmt.Sprint(floodCount), "--size", fmt.Sprint(floodSize))...)
	peer.awaitStep(t, "flooded", w.sample)
	w.sample()
	if p.hasMetrics() {
		atFlooded(p)
	} else {
		skipMetrics(t, p)
	}
	peer.proceed(t)
	peer.result(t)
	p.alive(t)
	w.check()
}

func TestHeartbeatPeerStaysConnected(t *testing.T) {
	p := startProxy(t, proxyOpts{})
	runPeer(t, "heartbeat.py", p.peerArgs()...)
	p.alive(t)
}

func TestExitOnSignal(t *testing.T) {
	for _, tc := range []struct {
		name string
		sig  os.Signal
	}{
		{"SIGTERM", syscall.SIGTERM},
		{"SIGINT", syscall.SIGINT},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startProxy(t, proxyOpts{})
			peer := startPeer(t, "idle_peers.py", p.peerArgs()...)
			peer.awaitStep(t, "connected", nil)
			if p.hasMetrics() {
				for _, s := range []string{"frontend", "backend", "publisher"} {
					p.waitAtLeast(t, 1, peers, "socket", s)
				}
			} else {
				skipMetrics(t, p)
			}
			took, inTime := p.signal(t, tc.sig)
			p.checkExit0(t, tc.sig, took, inTime)
			peer.proceed(t)
			peer.result(t)
		})
	}
}

// The proxy runs its Go code on one thread unless told otherwise
// (--threads, $GOMAXPROCS), and its /metrics says how many it has.
func TestThreads(t *testing.T) {
	ours(t)
	t.Setenv("GOMAXPROCS", "") // whatever the runner's environment says
	for _, tt := range []struct {
		args []string
		want float64
	}{
		{nil, 1},
		{[]string{"--threads", "3"}, 3},
	} {
		p := startProxy(t, proxyOpts{args: tt.args})
		if got := p.metric(t, "go_sched_gomaxprocs_threads"); got != tt.want {
			t.Errorf("proxy with %q: GOMAXPROCS %v, want %v", tt.args, got, tt.want)
		}
	}
}
