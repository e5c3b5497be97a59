package e2e

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
)

// drainExit bounds the wait for a proxy's exit after a drain of at most
// the given timeout.
func drainExit(timeout time.Duration) time.Duration { return timeout + 15*time.Second }

// sendSignal sends sig to the proxy, failing the test if it cannot.
func (p *proxy) sendSignal(t *testing.T, sig os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %v: %v", sig, err)
	}
}

// waitExit waits at most timeout for the proxy to exit, and fails the
// test unless it exited with status 0. It returns when it exited.
func (p *proxy) waitExit(t *testing.T, timeout time.Duration) time.Time {
	t.Helper()
	p.stopped = true
	if !p.exitWithin(timeout) {
		t.Fatalf("proxy did not exit within %v; killed\nlog:\n%s", timeout, p.log)
	}
	if p.waitErr != nil {
		t.Errorf("proxy exited with %v, want status 0\nlog:\n%s", p.waitErr, p.log)
	}
	return time.Now()
}

// drained is the proxy's "drained" log line.
func (p *proxy) drained(t *testing.T) map[string]string {
	t.Helper()
	kv := p.waitLog(t, metricWait, "drained")
	t.Logf("drained: reason=%s deregistered=%s peers_before=%s peers_after=%s peers_left=%s routed=%s took=%s",
		kv["reason"], kv["deregistered"], kv["peers_before"], kv["peers_after"], kv["peers_left"], kv["routed"], kv["took"])
	return kv
}

func atoi(t *testing.T, what, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("%s=%q: %v", what, s, err)
	}
	return n
}

// SIGTERM under load: the record leaves etcd first, and casts keep
// flowing through the proxy after that, until --drain-timeout.
func TestDrainLeavesRegistryThenRoutes(t *testing.T) {
	ours(t)
	const timeout = 3 * time.Second
	e := testutil.Embedded(t)
	w := watchRecords(t, e.Client(t))
	p := startProxy(t, proxyOpts{registry: []string{"-u", etcdURL(e)}, args: []string{"--drain-timeout", timeout.String()}})
	reg := p.waitRegistered(t, "registered")
	w.wait(t, regWait, reg.id, true)

	s := startPeer(t, "cast_stream.py", p.peerArgs()...)
	s.awaitStep(t, "warm", nil)
	s.proceed(t)
	s.waitReceived(t, 50)

	sigAt := time.Now()
	p.sendSignal(t, syscall.SIGTERM)
	gone := w.wait(t, regWait, reg.id, false)
	_, atDelete := s.progress(t)
	// Routed after the record went, while the proxy drains.
	s.waitReceived(t, atDelete+100)
	if p.exited() {
		t.Fatalf("proxy exited before the casts after its deregistration arrived\nlog:\n%s", p.log)
	}
	exitAt := p.waitExit(t, drainExit(timeout))
	_, atExit := s.progress(t)
	kv := p.drained(t)
	t.Logf("SIGTERM: record deleted after %v; exit after %v; %d casts arrived between the deletion and the exit",
		gone.at.Sub(sigAt).Round(time.Millisecond), exitAt.Sub(sigAt).Round(time.Millisecond), atExit-atDelete)
	if kv["reason"] != "timeout" || kv["deregistered"] != "true" {
		t.Errorf("drained reason=%s deregistered=%s, want timeout and true (the casts never stopped)", kv["reason"], kv["deregistered"])
	}
	if n := atoi(t, "routed", kv["routed"]); n < 100 {
		t.Errorf("drained routed=%d, want at least the 100 casts seen meanwhile", n)
	}
	if took := exitAt.Sub(sigAt); took < timeout {
		t.Errorf("exit %v after SIGTERM, want after the drain's %v", took, timeout)
	}
	if gone.at.After(exitAt) {
		t.Errorf("record deleted at %v, after the exit at %v, want first", gone.at, exitAt)
	}
}

// Peers that stay connected but send nothing: the drain ends after
// DrainQuiet (1 s), long before its timeout.
func TestDrainEndsWhenPeersQuiet(t *testing.T) {
	ours(t)
	p := startProxy(t, proxyOpts{args: []string{"--drain-timeout", "60s"}})
	peer := startPeer(t, "idle_peers.py", p.peerArgs()...)
	peer.awaitStep(t, "connected", nil)
	for _, s := range []string{"frontend", "backend", "publisher"} {
		p.waitAtLeast(t, 1, peers, "socket", s)
	}
	sigAt := time.Now()
	p.sendSignal(t, syscall.SIGTERM)
	exitAt := p.waitExit(t, drainExit(0))
	kv := p.drained(t)
	if kv["reason"] != "quiet" || kv["peers_before"] != "3" || kv["peers_after"] != "3" || kv["deregistered"] != "false" {
		t.Errorf("drained: reason=%s peers_before=%s peers_after=%s deregistered=%s; want quiet, 3, 3, false (no registry)",
			kv["reason"], kv["peers_before"], kv["peers_after"], kv["deregistered"])
	}
	if took := exitAt.Sub(sigAt); took < time.Second || took > 30*time.Second {
		t.Errorf("exit %v after SIGTERM, want after the quiet second and long before the 60s timeout", took)
	}
	peer.proceed(t)
	peer.result(t)
}

// Peers that go away during the drain end it.
func TestDrainEndsWhenPeersLeave(t *testing.T) {
	ours(t)
	p := startProxy(t, proxyOpts{args: []string{"--drain-timeout", "60s"}})
	s := startPeer(t, "cast_stream.py", p.peerArgs()...)
	s.awaitStep(t, "warm", nil)
	s.proceed(t)
	n := s.waitReceived(t, 50)
	p.sendSignal(t, syscall.SIGTERM)
	p.waitLog(t, metricWait, "draining")
	s.waitReceived(t, n+50) // still routing
	s.kill()                // its connections close
	p.waitExit(t, drainExit(0))
	kv := p.drained(t)
	if kv["reason"] != "no peers" || kv["peers_before"] != "2" || kv["peers_after"] != "0" || kv["peers_left"] != "2" {
		t.Errorf("drained: reason=%s peers_before=%s peers_after=%s peers_left=%s; want no peers, 2, 0, 2",
			kv["reason"], kv["peers_before"], kv["peers_after"], kv["peers_left"])
	}
}

// A second signal during a drain stops the proxy at once; SIGINT does not
// drain at all.
func TestDrainSecondSignal(t *testing.T) {
	for _, tc := range []struct {
		name   string
		first  os.Signal
		second os.Signal // nil: none
	}{
		{"SIGTERM then SIGTERM", syscall.SIGTERM, syscall.SIGTERM},
		{"SIGTERM then SIGINT", syscall.SIGTERM, syscall.SIGINT},
		{"SIGINT", syscall.SIGINT, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ours(t)
			p := startProxy(t, proxyOpts{args: []string{"--drain-timeout", "60s"}})
			s := startPeer(t, "cast_stream.py", p.peerArgs()...)
			s.awaitStep(t, "warm", nil)
			s.proceed(t)
			s.waitReceived(t, 50)
			p.sendSignal(t, tc.first)
			if tc.second == nil {
				p.waitExit(t, 30*time.Second)
				if hasLogLine(splitLines(p.log.String()), "draining") {
					t.Errorf("SIGINT drained the proxy, want it stopped at once\nlog:\n%s", p.log)
				}
				return
			}
			p.waitLog(t, metricWait, "draining")
			at := time.Now()
			p.sendSignal(t, tc.second)
			exitAt := p.waitExit(t, 30*time.Second)
			p.waitLog(t, metricWait, "second signal: stopping at once")
			if kv := p.drained(t); kv["reason"] != "interrupted" {
				t.Errorf("drained reason=%s, want interrupted", kv["reason"])
			}
			t.Logf("exit %v after the second signal", exitAt.Sub(at).Round(time.Millisecond))
		})
	}
}

func splitLines(s string) []string {
	var out []string
	for l := range strings.Lines(s) {
		out = append(out, strings.TrimSuffix(l, "\n"))
	}
	return out
}
