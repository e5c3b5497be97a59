package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
)

// notifyWait bounds the wait for one notification.
const notifyWait = 30 * time.Second

// notifyMsg is one datagram a proxy sent to $NOTIFY_SOCKET.
type notifyMsg struct {
	at    time.Time
	state string // "READY=1\nSTATUS=..."
}

// has reports whether the message holds the line assignment ("READY=1").
func (m notifyMsg) has(assignment string) bool {
	return slices.Contains(strings.Split(m.state, "\n"), assignment)
}

// notifySocket stands in for systemd: a unixgram socket that collects what
// a proxy started with NOTIFY_SOCKET=<path> tells it.
type notifySocket struct {
	path string
	conn *net.UnixConn
	msgs chan notifyMsg
	done chan struct{} // closed when the reading goroutine ends
}

// listenNotify makes the socket; its cleanup closes it and waits for its
// reading goroutine.
func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	// A short directory: a socket's path has at most 107 bytes.
	dir, err := os.MkdirTemp("", "sd")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &notifySocket{path: filepath.Join(dir, "notify"), msgs: make(chan notifyMsg, 1024), done: make(chan struct{})}
	s.conn, err = net.ListenUnixgram("unixgram", &net.UnixAddr{Name: s.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(s.done)
		buf := make([]byte, 4096)
		for {
			n, err := s.conn.Read(buf)
			if err != nil {
				return
			}
			s.msgs <- notifyMsg{at: time.Now(), state: string(buf[:n])}
		}
	}()
	t.Cleanup(func() {
		s.conn.Close()
		<-s.done
	})
	return s
}

// pending returns the messages received so far and not yet taken.
func (s *notifySocket) pending() []notifyMsg {
	var got []notifyMsg
	for {
		select {
		case m := <-s.msgs:
			got = append(got, m)
		default:
			return got
		}
	}
}

// waitFor takes messages until one holds assignment, and returns it and
// the ones before it.
func (s *notifySocket) waitFor(t *testing.T, assignment string) (notifyMsg, []notifyMsg) {
	t.Helper()
	timer := time.NewTimer(notifyWait)
	defer timer.Stop()
	var before []notifyMsg
	for {
		select {
		case m := <-s.msgs:
			if m.has(assignment) {
				return m, before
			}
			before = append(before, m)
		case <-timer.C:
			t.Fatalf("no %s notification within %v; got %q", assignment, notifyWait, states(before))
		}
	}
}

func states(ms []notifyMsg) []string {
	var s []string
	for _, m := range ms {
		s = append(s, m.state)
	}
	return s
}

// startNotifiedProxy starts our double-router proxy on loopback with
// metrics, the extra environment env and args, and waits for its "proxy
// started" line.
func startNotifiedProxy(t *testing.T, env []string, args ...string) *proxy {
	t.Helper()
	ours(t)
	cmd := exec.Command(binPath, append([]string{"-H", "127.0.0.1", "--metrics-addr", "127.0.0.1:0"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	p := &proxy{log: newLineBuffer()}
	p.process = startProcess(t, cmd, p.log, p.log)
	t.Cleanup(func() { p.cleanup(t) })
	p.waitStarted(t, proxyOpts{})
	return p
}

// dialAll fails the test unless each of the proxy's ports accepts a TCP
// connection.
func (p *proxy) dialAll(t *testing.T) {
	t.Helper()
	for _, ep := range []string{p.frontend, p.backend, p.publisher} {
		c, err := net.DialTimeout("tcp", strings.TrimPrefix(ep, "tcp://"), etcdCall)
		if err != nil {
			t.Errorf("dial %s: %v", ep, err)
			continue
		}
		c.Close()
	}
}

// READY=1 waits for the registration: with etcd down, the proxy binds its
// ports and logs that etcd is unavailable, and systemd hears nothing but
// its status; once etcd is up, READY=1 comes, and when it does the record
// is in etcd and every port accepts. SIGTERM then sends STOPPING=1 before
// the proxy exits.
func TestSystemdNotifyReadyAfterRegistration(t *testing.T) {
	ours(t)
	e := testutil.Embedded(t)
	e.Stop() // its ports stay the same for Start
	sock := listenNotify(t)
	p := startNotifiedProxy(t, []string{"NOTIFY_SOCKET=" + sock.path},
		"-u", etcdURL(e), "--target-expire", "1")
	p.waitLog(t, regWait, "etcd unavailable, retrying with backoff")
	early := sock.pending()
	for _, m := range early {
		if m.has("READY=1") {
			t.Fatalf("READY=1 at %v, before the proxy was registered (etcd is down): %q", m.at, m.state)
		}
	}

	e.Start()
	ready, before := sock.waitFor(t, "READY=1")
	// Right away: nothing has had time to change since READY=1.
	cli := e.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), etcdCall)
	resp, err := cli.Get(ctx, recordsPrefix, clientv3.WithPrefix())
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || !strings.Contains(string(resp.Kvs[0].Value), `"frontend":"`+p.frontend+`"`) {
		t.Errorf("records in etcd at READY=1: got %d %q, want the proxy's, frontend %s", len(resp.Kvs), resp.Kvs, p.frontend)
	}
	p.dialAll(t)
	if want := "STATUS=routing: frontend " + p.frontend + ", backend " + p.backend + ", publisher " + p.publisher; !ready.has(want) {
		t.Errorf("READY=1 message %q, want the line %q", ready.state, want)
	}
	if before = append(early, before...); len(before) == 0 || !before[0].has("STATUS=waiting for the registration in etcd") {
		t.Errorf("before READY=1: got %q, want first STATUS=waiting for the registration in etcd", states(before))
	}
	// "registered again": its first attempt failed.
	reg := p.waitRegistered(t, "registered again")
	t.Logf("registered at %v, READY=1 %v later", reg.at.Format(time.StampMilli), ready.at.Sub(reg.at).Round(time.Millisecond))

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	stopping, _ := sock.waitFor(t, "STOPPING=1")
	took, inTime := p.signal(t, syscall.SIGTERM) // already sent: waits for the exit
	p.checkExit0(t, syscall.SIGTERM, took, inTime)
	if !stopping.has("STATUS=shutting down") {
		t.Errorf("STOPPING=1 message %q, want STATUS=shutting down in it", stopping.state)
	}
	if rest := sock.pending(); len(rest) > 0 {
		t.Errorf("after STOPPING=1: got %q, want nothing more", states(rest))
	}
}

// Without a registry, READY=1 comes as soon as the ports are bound; with
// WATCHDOG_USEC, WATCHDOG=1 comes every half of it.
func TestSystemdWatchdog(t *testing.T) {
	const timeout = 2 * time.Second
	sock := listenNotify(t)
	p := startNotifiedProxy(t, []string{"NOTIFY_SOCKET=" + sock.path,
		fmt.Sprintf("WATCHDOG_USEC=%d", timeout.Microseconds())}, "-u", "zmq://")
	sock.waitFor(t, "READY=1")
	p.dialAll(t)
	p.waitLog(t, startTimeout, "systemd watchdog on", "timeout", "2s", "interval", "1s")

	const pings = 6
	var at []time.Time
	for len(at) < pings {
		m, _ := sock.waitFor(t, "WATCHDOG=1")
		at = append(at, m.at)
	}
	var gaps []time.Duration
	for i := 1; i < len(at); i++ {
		gaps = append(gaps, at[i].Sub(at[i-1]))
	}
	mean := at[len(at)-1].Sub(at[0]) / time.Duration(len(gaps))
	t.Logf("WATCHDOG_USEC=%v: WATCHDOG=1 every %v on average; gaps %v", timeout, mean.Round(time.Millisecond), gaps)
	// A ticker at half the timeout: the mean is that, give or take the
	// delivery of each datagram; a gap as long as the timeout would have
	// had the proxy killed.
	if mean < timeout*4/10 || mean > timeout*6/10 {
		t.Errorf("mean interval of WATCHDOG=1: got %v, want about %v", mean, timeout/2)
	}
	for _, g := range gaps {
		if g >= timeout {
			t.Errorf("a gap of %v between two WATCHDOG=1, want less than WATCHDOG_USEC (%v)", g, timeout)
		}
	}
}

// Bad watchdog settings and a notification socket that is not there: the
// proxy says so, once, and runs as it would without them.
func TestSystemdNotifyFailures(t *testing.T) {
	t.Run("bad WATCHDOG_USEC", func(t *testing.T) {
		sock := listenNotify(t)
		p := startNotifiedProxy(t, []string{"NOTIFY_SOCKET=" + sock.path, "WATCHDOG_USEC=soon"}, "-u", "zmq://")
		kv := p.waitLog(t, startTimeout, "systemd watchdog off: bad $WATCHDOG_USEC or $WATCHDOG_PID")
		if !strings.Contains(kv["err"], "WATCHDOG_USEC") {
			t.Errorf("err=%q, want it to name WATCHDOG_USEC", kv["err"])
		}
		sock.waitFor(t, "READY=1")
		runPeer(t, "call_reply.py", p.peerArgs()...)
		p.alive(t)
	})
	t.Run("no socket", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "nobody-listens")
		p := startNotifiedProxy(t, []string{"NOTIFY_SOCKET=" + missing, "WATCHDOG_USEC=200000"}, "-u", "zmq://")
		p.waitLog(t, startTimeout, "systemd notification failed", "socket", missing)
		runPeer(t, "call_reply.py", p.peerArgs()...) // meanwhile, several watchdog pings fail
		p.alive(t)
		if n := strings.Count(p.log.String(), `level=WARN msg="systemd notification failed"`); n != 1 {
			t.Errorf("warnings of failed notifications: got %d, want 1 (the next ones at debug level)\nlog:\n%s", n, p.log)
		}
	})
}

// The watchdog's pings go on while a SIGTERM drains the proxy, between
// STOPPING=1 and the exit.
func TestSystemdWatchdogDuringDrain(t *testing.T) {
	const (
		timeout = time.Second // WATCHDOG=1 every 500 ms
		drain   = 3 * time.Second
	)
	sock := listenNotify(t)
	p := startNotifiedProxy(t, []string{"NOTIFY_SOCKET=" + sock.path,
		fmt.Sprintf("WATCHDOG_USEC=%d", timeout.Microseconds())}, "-u", "zmq://", "--drain-timeout", drain.String())
	sock.waitFor(t, "READY=1")
	s := startPeer(t, "cast_stream.py", p.peerArgs()...)
	s.awaitStep(t, "warm", nil)
	s.proceed(t)
	s.waitReceived(t, 50)
	p.sendSignal(t, syscall.SIGTERM)
	stopping, _ := sock.waitFor(t, "STOPPING=1")
	exitAt := p.waitExit(t, drainExit(drain))
	if kv := p.drained(t); kv["reason"] != "timeout" {
		t.Fatalf("drained reason=%s, want timeout (casts flowed throughout)", kv["reason"])
	}
	pings := []time.Time{stopping.at}
	for _, m := range sock.pending() {
		if m.has("WATCHDOG=1") {
			pings = append(pings, m.at)
		}
	}
	pings = append(pings, exitAt)
	var longest time.Duration
	for i := 1; i < len(pings); i++ {
		longest = max(longest, pings[i].Sub(pings[i-1]))
	}
	t.Logf("drain of %v: %d WATCHDOG=1 between STOPPING=1 and the exit, longest gap %v",
		exitAt.Sub(stopping.at).Round(time.Millisecond), len(pings)-2, longest.Round(time.Millisecond))
	if longest >= timeout {
		t.Errorf("a gap of %v without WATCHDOG=1 during the drain, want less than WATCHDOG_USEC (%v)", longest, timeout)
	}
}
