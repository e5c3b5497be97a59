package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
)

// ctl runs "zmq-proxy ctl args..." and returns its exit code, stdout and
// stderr.
func ctl(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(binPath, append([]string{"ctl"}, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("zmq-proxy ctl %q: %v", args, err)
		}
		code = ee.ExitCode()
	}
	return code, stdout.String(), stderr.String()
}

// ctlOK runs ctl and fails the test unless it exits 0 and prints want.
func ctlOK(t *testing.T, want string, args ...string) {
	t.Helper()
	code, out, errOut := ctl(t, args...)
	if code != 0 || out != want {
		t.Errorf("zmq-proxy ctl %s: exit %d, stdout %q, stderr %q; want 0 and %q", strings.Join(args, " "), code, out, errOut, want)
	}
}

// rxQueued sums the bytes received and not yet read by the process on
// the established TCP connections whose local port is port
// (/proc/net/tcp's rx_queue), and counts those connections.
func rxQueued(t *testing.T, port int) (bytes int64, conns int) {
	t.Helper()
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	for i, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) < 5 || f[3] != "01" { // 01: ESTABLISHED
			continue
		}
		_, lport, _ := strings.Cut(f[1], ":")
		if p, err := strconv.ParseInt(lport, 16, 32); err != nil || int(p) != port {
			continue
		}
		_, rx, _ := strings.Cut(f[4], ":")
		n, err := strconv.ParseInt(rx, 16, 64)
		if err != nil {
			t.Fatalf("/proc/net/tcp: %q: %v", line, err)
		}
		bytes += n
		conns++
	}
	return bytes, conns
}

func portOf(t *testing.T, endpoint string) int {
	t.Helper()
	i := strings.LastIndexByte(endpoint, ':')
	n, err := strconv.Atoi(endpoint[i+1:])
	if err != nil {
		t.Fatalf("port of %q: %v", endpoint, err)
	}
	return n
}

// While paused, the proxy reads nothing from the frontend: the client's
// casts pile up unread in the proxy's TCP receive buffer and in the
// client's own queue, the proxy's memory does not grow with them, and
// after resume every one arrives, in order.
func TestPauseResume(t *testing.T) {
	ours(t)
	// On resume the backlog comes as one burst: a high-water mark above
	// it, so that none is dropped at the server's queue (that would be the
	// high-water mark at work, not the pause).
	p := startProxy(t, proxyOpts{args: []string{"--admin-addr", "127.0.0.1:0", "--hwm", "100000"}})
	admin := p.waitLog(t, startTimeout, "admin endpoint")["addr"]
	if !strings.HasPrefix(admin, "127.0.0.1:") {
		t.Fatalf("admin endpoint on %q, want loopback", admin)
	}
	peer := startPeer(t, "pause_flood.py", p.peerArgs()...)
	peer.awaitStep(t, "warm", nil)
	drops0 := p.drops(t) // warm-up probes sent before the server connected are dropped
	received0 := p.metric(t, received, "socket", "frontend")
	routed0 := p.metric(t, routed, "socket", "backend")
	rss0 := p.rssBytes(t)

	ctlOK(t, "paused\n", "pause", "--admin-addr", admin)
	ctlOK(t, "already paused\n", "pause", "--admin", admin)
	peer.proceed(t)
	peer.awaitStep(t, "sent", nil)
	sent := 0
	for _, l := range splitLines(peer.out.String()) {
		if rest, ok := strings.CutPrefix(l, "SENT "); ok {
			sent = atoi(t, "SENT", rest)
		}
	}
	if sent < 1000 {
		t.Fatalf("the client sent %d casts before its queue was full, want at least its high-water mark (1000)", sent)
	}
	fe := portOf(t, p.frontend)
	var queued int64
	testutil.CheckFor(t, metricWait, func() error {
		var conns int
		if queued, conns = rxQueued(t, fe); queued == 0 {
			return fmt.Errorf("no unread bytes on the proxy's %d frontend connections", conns)
		}
		return nil
	})
	// Nothing is routed; the one read the frontend's reader had made when
	// it stopped at the gate (at most one 64 KiB buffer: 64 casts of 1 KiB)
	// is held, not routed.
	if got := p.metric(t, routed, "socket", "backend"); got != routed0 {
		t.Errorf("backend routed while paused: %v, want %v as before the pause", got, routed0)
	}
	if got := p.metric(t, received, "socket", "frontend"); got > received0+64 {
		t.Errorf("frontend received while paused: %v, want at most one read (64 casts) more than the %v before the pause", got, received0)
	}
	rss1 := p.rssBytes(t)
	t.Logf("paused: %d casts sent, %d bytes unread in the proxy's receive buffer; RSS %d KiB before, %d KiB now",
		sent, queued, rss0>>10, rss1>>10)
	if grown := rss1 - rss0; grown > 16<<20 {
		t.Errorf("the proxy's RSS grew by %d KiB while paused, want it bounded (under 16 MiB)", grown>>10)
	}
	var st struct {
		Paused  bool
		Sockets map[string]struct{ Received, Routed uint64 }
	}
	code, out, errOut := ctl(t, "stats", "--admin-addr", admin)
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil || !st.Paused {
		t.Errorf("ctl stats while paused: exit %d, %v, %q (stderr %q); want 0 and paused", code, err, out, errOut)
	}

	p.noDropsBut(t, drops0)
	ctlOK(t, "resumed\n", "resume", "--admin-addr", admin)
	ctlOK(t, "not paused\n", "resume", "--admin", admin)
	peer.proceed(t)
	res := peer.result(t)
	if res["received"] != float64(sent) || res["received_while_paused"] != float64(0) {
		t.Errorf("server: %v received of %d sent, %v while paused; want all, and 0 while paused", res["received"], sent, res["received_while_paused"])
	}
	p.noDropsBut(t, drops0)
	code, out, _ = ctl(t, "stats", "--admin-addr", admin)
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil || st.Paused ||
		st.Sockets["frontend"].Received < uint64(received0)+uint64(sent) {
		t.Errorf("ctl stats after the resume: exit %d, %v, %+v; want not paused, frontend received at least %v", code, err, st, received0+float64(sent))
	}
	p.alive(t)
}

// ctl's failures: a proxy that does not answer, one that refuses (a local
// publisher has no frontend to pause), and an admin address in use.
func TestCtlFailures(t *testing.T) {
	ours(t)
	closed := freeAddr(t)
	if code, _, errOut := ctl(t, "stats", "--admin-addr", closed); code != 1 || !strings.HasPrefix(errOut, "zmq-proxy ctl: no answer from "+closed+": ") {
		t.Errorf("ctl stats to a closed port: exit %d, stderr %q; want 1 and \"no answer from %s\"", code, errOut, closed)
	}

	ini := filepath.Join(t.TempDir(), "local.ini")
	if err := os.WriteFile(ini, []byte("[oslo_messaging_zmq]\nsubscribe_on = "+freeAddr(t)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	lp := startProxy(t, proxyOpts{local: true, registry: []string{"-u", "zmq://"}, args: []string{"-c", ini, "--admin-addr", "127.0.0.1:0"}})
	admin := lp.waitLog(t, startTimeout, "admin endpoint")["addr"]
	code, _, errOut := ctl(t, "pause", "--admin-addr", admin)
	if want := "zmq-proxy ctl: " + admin + ": 409 Conflict: a local publisher proxy has no frontend to pause\n"; code != 1 || errOut != want {
		t.Errorf("ctl pause on a local publisher: exit %d, stderr %q; want 1 and %q", code, errOut, want)
	}
	ctlOK(t, "not paused\n", "resume", "--admin", admin)

	// The admin address is taken: the proxy says so and exits 1.
	cmd := exec.Command(binPath, "-H", "127.0.0.1", "-u", "zmq://", "--admin-addr", admin)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), `msg="admin endpoint not started"`) {
		t.Errorf("a proxy on a taken admin address: %v, want exit status 1 and \"admin endpoint not started\"\n%s", err, out)
	}
}

// A paused proxy whose frontend readers are held at the gate still stops
// on SIGTERM: closing the socket releases them.
func TestPausedProxyStops(t *testing.T) {
	ours(t)
	p := startProxy(t, proxyOpts{args: []string{"--admin-addr", "127.0.0.1:0"}})
	admin := p.waitLog(t, startTimeout, "admin endpoint")["addr"]
	peer := startPeer(t, "pause_flood.py", p.peerArgs()...)
	peer.awaitStep(t, "warm", nil)
	ctlOK(t, "paused\n", "pause", "--admin", admin)
	peer.proceed(t)
	peer.awaitStep(t, "sent", nil)
	fe := portOf(t, p.frontend)
	testutil.CheckFor(t, metricWait, func() error {
		if n, _ := rxQueued(t, fe); n == 0 {
			return fmt.Errorf("no unread bytes on the proxy's frontend connections yet")
		}
		return nil
	})
	took, inTime := p.signal(t, syscall.SIGTERM)
	p.checkExit0(t, syscall.SIGTERM, took, inTime)
	if kv := p.drained(t); kv["reason"] != "quiet" {
		t.Errorf("drained reason=%s, want quiet (nothing is read while paused)", kv["reason"])
	}
}
