package e2e

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
)

// resumeBound bounds how long fanout may take to resume through the local
// proxies after a central proxy is killed and started again. It is a
// failure bound only: the measured gap is logged.
const resumeBound = 30 * time.Second

func exactly(n float64) (func(float64) bool, string) {
	return func(v float64) bool { return v == n }, fmt.Sprintf("== %v", n)
}

// waitExactly waits until the metric is n (a gauge that settles).
func (p *proxy) waitExactly(t *testing.T, n float64, name string, labels ...string) {
	t.Helper()
	cond, want := exactly(n)
	p.waitMetric(t, cond, want, name, labels...)
}

// fabric is a registry (an in-process etcd), central proxies and one local
// publisher proxy per simulated node, all registered there.
type fabric struct {
	etcd     *testutil.EmbeddedEtcd
	centrals []*proxy
	locals   []*proxy // locals[i] runs as --name node-<i+1>
}

// centralOpts are the options of a central proxy of the fabric: the
// registry, a 2 s lease (a killed one is gone soon), and more flags.
func (f *fabric) centralOpts(name string, more ...string) proxyOpts {
	return proxyOpts{
		registry: []string{"-u", etcdURL(f.etcd), "--target-expire", "2"},
		args:     append([]string{"--name", name}, more...),
	}
}

// startFabric starts an etcd, the central proxies and the local proxies,
// and waits until every local proxy has one connection to every central
// publisher, found in the registry.
func startFabric(t *testing.T, centrals, nodes int) *fabric {
	t.Helper()
	return startFabricRSS(t, centrals, nodes, false)
}

// startFabricRSS is startFabric whose local proxies run the binary built
// without -race when plain is set, for tests that measure their RSS.
func startFabricRSS(t *testing.T, centrals, nodes int, plain bool) *fabric {
	t.Helper()
	f := &fabric{etcd: testutil.Embedded(t)}
	for i := range centrals {
		f.centrals = append(f.centrals, startProxy(t, f.centralOpts(fmt.Sprintf("central-%d", i+1))))
	}
	for i := range nodes {
		f.locals = append(f.locals, startProxy(t, proxyOpts{
			local:    true,
			registry: []string{"-u", etcdURL(f.etcd)},
			args:     []string{"--name", fmt.Sprintf("node-%d", i+1)},
			plain:    plain,
		}))
	}
	f.waitConnected(t)
	return f
}

// waitConnected waits until each central publisher has one connection per
// local proxy, and each local proxy one per central publisher.
func (f *fabric) waitConnected(t *testing.T) {
	t.Helper()
	for _, c := range f.centrals {
		c.waitExactly(t, float64(len(f.locals)), peers, "socket", "publisher")
	}
	for _, l := range f.locals {
		l.waitExactly(t, float64(len(f.centrals)), peers, "socket", "subscriber")
	}
}

// checkConnections checks, once, that each central publisher has exactly
// one connection per local proxy and each local proxy exactly one per
// central publisher.
func (f *fabric) checkConnections(t *testing.T) {
	t.Helper()
	for i, c := range f.centrals {
		if n := c.metric(t, peers, "socket", "publisher"); n != float64(len(f.locals)) {
			t.Errorf("central %d: %s{socket=publisher} = %v, want %d (one per local proxy)", i+1, peers, n, len(f.locals))
		}
	}
	for i, l := range f.locals {
		if n := l.metric(t, peers, "socket", "subscriber"); n != float64(len(f.centrals)) {
			t.Errorf("node-%d: %s{socket=subscriber} = %v, want %d (one per central publisher)", i+1, peers, n, len(f.centrals))
		}
	}
}

// noRestarts fails the test if the proxy's supervisor restarted a socket
// actor: a local proxy must follow the central proxies without that.
func (p *proxy) noRestarts(t *testing.T, name string) {
	t.Helper()
	for _, l := range strings.Split(p.log.String(), "\n") {
		if strings.HasPrefix(parseLogLine(l)["msg"], "socket actor failed") {
			t.Errorf("%s: %s", name, l)
		}
	}
}

// Fanout through two central proxies and three local publisher proxies:
// every subscriber on every node gets every message its prefix matches,
// once, and nothing else; each central publisher has exactly one
// connection per local proxy.
func TestLocalPublishersFanout(t *testing.T) {
	ours(t)
	f := startFabric(t, 2, 3)

	// The local proxies registered as such, with their PUB.
	recs := listRecords(t, "-u", etcdURL(f.etcd))
	if len(recs) != 5 {
		t.Errorf("list: got %d records, want 5 (2 central, 3 local)", len(recs))
	}
	for i, l := range f.locals {
		reg := l.waitRegistered(t, "registered")
		l.wantRecord(t, recs[reg.id], "local", fmt.Sprintf("node-%d", i+1))
	}

	before := make([]counters, 0, 5)
	all := append(append([]*proxy{}, f.centrals...), f.locals...)
	args := []string{"--timeout", fmt.Sprint(int(peerTimeout / time.Second))}
	for _, c := range f.centrals {
		args = append(args, "--central", c.frontend)
	}
	for _, l := range f.locals {
		args = append(args, "--node", l.publisher)
	}
	s := startPeer(t, "fanout_nodes.py", args...)
	s.awaitStep(t, "warm", nil)
	for _, p := range all {
		before = append(before, p.drops(t))
	}
	var pub0 []float64
	for _, p := range all {
		pub0 = append(pub0, p.metric(t, published, "socket", "publisher"))
	}
	s.proceed(t)
	s.awaitStep(t, "done", nil)
	f.checkConnections(t)
	for i, l := range f.locals {
		// The Python SUBs of its node (FILTERS in fanout_nodes.py).
		want := []float64{3, 2, 3}[i]
		if got := l.metric(t, peers, "socket", "publisher"); got != want {
			t.Errorf("node-%d: %s{socket=publisher} = %v, want %v (its subscribers)", i+1, peers, got, want)
		}
	}
	s.proceed(t)
	res := s.result(t)
	n, _ := res["published"].(float64)
	if n == 0 {
		t.Fatalf("fanout_nodes.py published nothing: %v", res)
	}
	// Each central proxy published its half; each local proxy all of it.
	for i, c := range f.centrals {
		c.waitAtLeast(t, pub0[i]+n/2, published, "socket", "publisher")
	}
	for i, l := range f.locals {
		l.waitAtLeast(t, pub0[len(f.centrals)+i]+n, published, "socket", "publisher")
	}
	for i, p := range all {
		p.noDropsBut(t, before[i])
		p.alive(t)
	}
}

// A central proxy killed (SIGKILL) and started again, on a new port or on
// the same one: fanout resumes through the local proxies, which are not
// restarted, and the fanout through the other central proxy goes on
// undisturbed meanwhile.
func TestLocalPublisherFollowsCentralRestart(t *testing.T) {
	ours(t)
	for _, tc := range []struct {
		name     string
		samePort bool
	}{
		{"new port", false},
		{"same port", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fabric{etcd: testutil.Embedded(t)}
			var ports []string
			if tc.samePort {
				p := freePorts(t, 3)
				ports = []string{"-f", p[0], "-b", p[1], "-p", p[2]}
			}
			// centrals[0] is restarted; centrals[1] survives.
			f.centrals = []*proxy{
				startProxy(t, f.centralOpts("central-1", ports...)),
				startProxy(t, f.centralOpts("central-2")),
			}
			for i := range 2 {
				f.locals = append(f.locals, startProxy(t, proxyOpts{
					local:    true,
					registry: []string{"-u", etcdURL(f.etcd)},
					args:     []string{"--name", fmt.Sprintf("node-%d", i+1)},
				}))
			}
			f.waitConnected(t)
			pids := []int{f.locals[0].pid(), f.locals[1].pid()}

			old := f.centrals[0]
			s := startPeer(t, "fanout_restart.py", "--timeout", fmt.Sprint(int(peerTimeout/time.Second)),
				"--survivor", f.centrals[1].frontend, "--restart", old.frontend,
				"--node", f.locals[0].publisher, "--node", f.locals[1].publisher)
			s.awaitStep(t, "warm", nil)
			s.proceed(t)
			s.waitReceived(t, 20) // a tenth of a second of fanout

			killAt := time.Now()
			old.signal(t, syscall.SIGKILL)
			c := startProxy(t, f.centralOpts("central-1", ports...))
			f.centrals[0] = c
			if tc.samePort && (c.frontend != old.frontend || c.publisher != old.publisher) {
				t.Fatalf("restarted on %s %s, want the same ports %s %s", c.frontend, c.publisher, old.frontend, old.publisher)
			}
			if !tc.samePort && c.publisher == old.publisher {
				t.Fatalf("restarted on the same publisher address %s, want a new one", c.publisher)
			}
			s.send(t, "restart "+c.frontend)
			first := s.waitOutput(t, resumeBound, "FIRST 2 0", "FIRST 2 1")
			earliest, latest := first[0], first[1]
			if latest.Before(earliest) {
				earliest, latest = latest, earliest
			}
			gap, all := earliest.Sub(killAt), latest.Sub(killAt)
			started := c.waitLog(t, regWait, "proxy started")
			reg := c.waitRegistered(t, "registered")
			t.Logf("fanout gap after kill -9 of a central proxy (%s): first message through the new one "+
				"at a subscriber %v after the kill, at both %v (new proxy started %v and registered %v after the kill)",
				tc.name, gap.Round(time.Millisecond), all.Round(time.Millisecond),
				logTime(started).Sub(killAt).Round(time.Millisecond), reg.at.Sub(killAt).Round(time.Millisecond))
			if !tc.samePort {
				for i, l := range f.locals {
					kv := l.waitLog(t, regWait, "subscribing to central publisher", "publisher", c.publisher)
					t.Logf("node-%d subscribed to the new central publisher %v after the kill", i+1,
						logTime(kv).Sub(killAt).Round(time.Millisecond))
				}
			}
			if gap > resumeBound {
				t.Errorf("fanout resumed %v after the kill, want within %v", gap, resumeBound)
			}

			f.waitConnected(t)
			if !tc.samePort {
				// The dead proxy's record expires (2 s lease) and the local
				// proxies stop dialling its old address.
				for _, l := range f.locals {
					l.waitLog(t, regWait, "central publisher gone", "publisher", old.publisher)
				}
			}
			s.send(t, "stop")
			res := s.result(t)
			t.Logf("delivery gap at each subscriber, between the last message through the killed proxy and "+
				"the first through the new one (ms): %v", res["delivery_gap_ms"])
			f.checkConnections(t)
			for i, l := range f.locals {
				if l.pid() != pids[i] || l.exited() {
					t.Errorf("node-%d's local proxy: pid %d (exited: %v), want %d still running", i+1, l.pid(), l.exited(), pids[i])
				}
				l.alive(t)
				l.noRestarts(t, fmt.Sprintf("node-%d", i+1))
			}
			f.centrals[1].alive(t)
			c.alive(t)
		})
	}
}

// waitOutput waits until the script has printed each of lines (exact
// lines, in any order) and returns when the driver saw each.
func (p *peer) waitOutput(t *testing.T, timeout time.Duration, lines ...string) []time.Time {
	t.Helper()
	seen := make([]time.Time, len(lines))
	left := len(lines)
	err := p.out.follow(timeout, p.done, func(l string) bool {
		for i, want := range lines {
			if l == want && seen[i].IsZero() {
				seen[i] = time.Now()
				left--
			}
		}
		return left == 0
	})
	switch {
	case errors.Is(err, errFollowExited):
		t.Fatalf("%s exited (%v) before printing %q\n%s", p.name, p.waitErr, lines, p.output())
	case err != nil:
		t.Fatalf("%s did not print %q within %v\n%s", p.name, lines, timeout, p.output())
	}
	return seen
}

// freePorts returns n distinct loopback ports that were free a moment ago,
// for flags.
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	var ports []string
	for _, p := range testutil.FreePorts(t, n) {
		ports = append(ports, strconv.Itoa(p))
	}
	return ports
}

// A subscriber that never reads, on one node, does not slow the others,
// on its node or on another: its local proxy drops for it at its
// high-water mark, and its memory stays bounded; the central proxy, whose
// subscribers (the local proxies) all read, drops nothing.
func TestLocalPublisherSlowSubscriber(t *testing.T) {
	ours(t)
	f := startFabricRSS(t, 1, 2, true)
	central, slowNode, other := f.centrals[0], f.locals[0], f.locals[1]
	w := &rssWatch{t: t, p: slowNode}
	w.sample()
	before := []counters{central.drops(t), other.drops(t)}
	s := startPeer(t, "local_slow_subscriber.py",
		"--timeout", fmt.Sprint(int(peerTimeout/time.Second)), "--fe", central.frontend,
		"--slow-node", slowNode.publisher, "--node", slowNode.publisher, "--node", other.publisher,
		"--count", fmt.Sprint(floodCount), "--size", fmt.Sprint(floodSize))
	start := time.Now()
	s.awaitStep(t, "flooded", w.sample)
	took := time.Since(start)
	w.sample()
	slowNode.waitMetric(t, func(v float64) bool { return v > 0 }, "> 0",
		dropped, "socket", "publisher", "reason", "hwm")
	slowNode.waitAtLeast(t, floodCount, published, "socket", "publisher")
	other.waitAtLeast(t, floodCount, published, "socket", "publisher")
	hwmDrops := slowNode.metric(t, dropped, "socket", "publisher", "reason", "hwm")
	s.proceed(t)
	s.result(t)
	t.Logf("%d messages of %d KiB to 2 nodes in %v (%.0f MiB/s per node); node-1 dropped %v for its slow subscriber",
		floodCount, floodSize>>10, took.Round(time.Millisecond),
		float64(floodCount*floodSize)/(1<<20)/took.Seconds(), hwmDrops)
	central.noDropsBut(t, before[0])
	other.noDropsBut(t, before[1])
	f.checkConnections(t)
	for _, p := range []*proxy{central, slowNode, other} {
		p.alive(t)
	}
	t.Logf("RSS of node-1's local proxy, the one with the slow subscriber:")
	w.check()
}
