package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
	"github.com/zmq-proxy/zmq-proxy/registry"
	"github.com/zmq-proxy/zmq-proxy/rpc"
)

// echoServer is a "zmq-proxy echo-server" process and what it printed.
type echoServer struct {
	*process
	name string
	out  *msgLines
	log  *lineBuffer
}

// msgLines collects echo-server's JSON lines.
type msgLines struct {
	mu    sync.Mutex
	lines []echoLine
	part  []byte
}

type echoLine struct {
	Type      string          `json:"type"`
	Method    string          `json:"method"`
	MessageID string          `json:"msg_id"`
	Args      json.RawMessage `json:"args"`
	EventType string          `json:"event_type"`
}

func (m *msgLines) Write(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.part = append(m.part, p...)
	for {
		i := strings.IndexByte(string(m.part), '\n')
		if i < 0 {
			return len(p), nil
		}
		var l echoLine
		if err := json.Unmarshal(m.part[:i], &l); err == nil {
			m.lines = append(m.lines, l)
		}
		m.part = m.part[i+1:]
	}
}

func (m *msgLines) all() []echoLine {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]echoLine(nil), m.lines...)
}

// startEcho runs "zmq-proxy echo-server demo NAME" on node (its --name)
// and waits until it is registered.
func startEcho(t *testing.T, e *testutil.EmbeddedEtcd, node, name string, more ...string) *echoServer {
	t.Helper()
	return startEchoAt(t, etcdURL(e), node, name, more...)
}

// threeEchoes starts the echo servers s1 and s2 on node-1 and s3 on
// node-2, on f's registry.
func threeEchoes(t *testing.T, f *fabric) []*echoServer {
	t.Helper()
	return []*echoServer{
		startEcho(t, f.etcd, "node-1", "s1"),
		startEcho(t, f.etcd, "node-1", "s2"),
		startEcho(t, f.etcd, "node-2", "s3"),
	}
}

// startEchoAt is startEcho on the registry of URL u.
func startEchoAt(t *testing.T, u, node, name string, more ...string) *echoServer {
	t.Helper()
	return runEcho(t, name, append([]string{"echo-server", "demo", name, "-u", u, "--name", node, "--timeout", "20s", "--acks"}, more...)...)
}

// runEcho runs the binary with args (an echo-server command line) and
// waits until it says "echo server started". Its cleanup stops it.
func runEcho(t *testing.T, name string, args ...string) *echoServer {
	t.Helper()
	s := &echoServer{name: name, out: &msgLines{}, log: newLineBuffer()}
	s.process = startProcess(t, exec.Command(binPath, args...), s.out, s.log)
	t.Cleanup(func() {
		if !s.exited() {
			_ = s.cmd.Process.Signal(syscall.SIGTERM)
		}
		s.kill()
	})
	if err := s.log.follow(startTimeout, s.done, func(l string) bool {
		return parseLogLine(l)["msg"] == "echo server started"
	}); err != nil {
		t.Fatalf("echo-server %s did not start: %v\n%s", name, err, s.log)
	}
	return s
}

// runCmd runs a client command of the binary to its end.
func runCmd(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e strings.Builder
	cmd := exec.Command(binPath, args...)
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("%v: %v", args, err)
	}
	return o.String(), e.String(), code
}

// goClient is an rpc.Client of the test process, on the fabric's etcd.
func goClient(t *testing.T, e *testutil.EmbeddedEtcd, acks bool) *rpc.Client {
	t.Helper()
	cli, err := registry.NewClient(registry.ClientConfig{Endpoints: e.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	c, err := rpc.NewClient(ctx, rpc.ClientConfig{Registry: registry.NewEtcd(cli, registry.Options{}), Host: "client", Acks: acks, AckTimeout: 500 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// keyOf is what identifies a message at the servers: its "k" argument.
func keyOf(l echoLine) string {
	var a struct{ K string }
	_ = json.Unmarshal(l.Args, &a)
	return a.K
}

// handled counts, over servers, the lines of type typ per "k" argument.
func handled(servers []*echoServer, typ string) (perKey map[string]int, perServer map[string]int) {
	perKey, perServer = map[string]int{}, map[string]int{}
	for _, s := range servers {
		for _, l := range s.out.all() {
			if l.Type == typ && keyOf(l) != "" {
				perKey[keyOf(l)]++
				perServer[s.name]++
			}
		}
	}
	return perKey, perServer
}

// handledEach checks that servers handled keys distinct messages of typ,
// each times times (over all servers), and returns how many each server
// handled.
func handledEach(servers []*echoServer, typ string, keys, times int) (perServer map[string]int, err error) {
	perKey, perServer := handled(servers, typ)
	if len(perKey) != keys {
		return perServer, fmt.Errorf("%d %s messages handled, want %d", len(perKey), typ, keys)
	}
	for k, n := range perKey {
		if n != times {
			return perServer, fmt.Errorf("%s %s handled %d times, want %d (per server: %v)", typ, k, n, times, perServer)
		}
	}
	return perServer, nil
}

// Two central and two local proxies, three echo-server processes on topic
// demo over two nodes, two Go clients and the commands: calls return
// replies and remote errors, casts reach one server each, a fanout reaches
// every server exactly once, notifications reach every listener.
func TestRPCFabric(t *testing.T) {
	ours(t)
	f := startFabric(t, 2, 2)
	servers := threeEchoes(t, f)
	u := etcdURL(f.etcd)

	out, errOut, code := runCmd(t, "call", "demo.s3", "echo", `{"value": "hello"}`, "-u", u)
	if code != 0 || strings.TrimSpace(out) != `{"server": "s3", "value": "hello"}` {
		t.Fatalf("call demo.s3: exit %d, stdout %q, stderr %q; want 0 and s3's echo", code, out, errOut)
	}
	_, errOut, code = runCmd(t, "call", "demo", "fail", "-u", u)
	if code != 3 || !strings.Contains(errOut, "remote ValueError: echo-server was asked to fail") {
		t.Fatalf("call demo fail: exit %d, stderr %q; want 3 and the ValueError", code, errOut)
	}
	_, errOut, code = runCmd(t, "call", "nobody", "echo", "-u", u)
	if code != 1 || !strings.Contains(errOut, "no server for the target: nobody") {
		t.Fatalf("call nobody: exit %d, stderr %q; want 1 and no server", code, errOut)
	}
	_, errOut, code = runCmd(t, "call", "demo", "echo", "{bad", "-u", u)
	if code != 2 || !strings.Contains(errOut, `JSON_ARGS "{bad" is not JSON`) {
		t.Fatalf("call with bad JSON: exit %d, stderr %q; want 2 naming the argument", code, errOut)
	}
	out, _, code = runCmd(t, "list", "-u", u)
	if code != 0 || strings.Count(out, "demo ") != 3 || !strings.Contains(out, "demo.s3 ") {
		t.Fatalf("list: exit %d, want the three servers of demo and demo.s3:\n%s", code, out)
	}

	clients := []*rpc.Client{goClient(t, f.etcd, true), goClient(t, f.etcd, true)}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const casts = 30
	for i := range casts {
		k := fmt.Sprintf("cast-%d", i)
		if err := clients[i%2].Cast(ctx, rpc.Target{Topic: "demo"}, "echo", map[string]any{"k": k}); err != nil {
			t.Fatalf("Cast %s: %v", k, err)
		}
	}
	testutil.CheckFor(t, metricWait, func() error {
		perServer, err := handledEach(servers, "CAST", casts, 1)
		if err != nil {
			return err
		}
		if len(perServer) != 3 {
			return fmt.Errorf("casts reached %v, want all three servers", perServer)
		}
		return nil
	})

	// Fanout: probe until the subscriptions are in place (they travel
	// after the connections), then count.
	testutil.CheckFor(t, metricWait, func() error {
		if err := clients[0].Fanout(ctx, "demo", "echo", map[string]any{"probe": true}); err != nil {
			return err
		}
		for _, s := range servers {
			n := 0
			for _, l := range s.out.all() {
				if l.Type == "CAST_FANOUT" {
					n++
				}
			}
			if n == 0 {
				return fmt.Errorf("%s got no fanout yet", s.name)
			}
		}
		return nil
	})
	const fanouts = 10
	for i := range fanouts {
		if err := clients[i%2].Fanout(ctx, "demo", "echo", map[string]any{"k": fmt.Sprintf("fan-%d", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, errOut, code := runCmd(t, "notify", "demo.info", "thing.done", `{"k": "note"}`, "-u", u); code != 0 {
		t.Fatalf("notify: exit %d: %s", code, errOut)
	}
	testutil.CheckFor(t, metricWait, func() error {
		if _, err := handledEach(servers, "CAST_FANOUT", fanouts, 3); err != nil {
			return err
		}
		for _, s := range servers {
			notes := 0
			for _, l := range s.out.all() {
				if l.Type == "NOTIFY" && l.EventType == "thing.done" {
					notes++
				}
			}
			if notes != 1 {
				return fmt.Errorf("%s got %d notifications, want 1", s.name, notes)
			}
		}
		return nil
	})
	// The servers of node-1 listen on node-1's local publisher only, the
	// one of node-2 on node-2's: each local proxy has its servers' SUBs.
	if n := f.locals[0].metric(t, peers, "socket", "publisher"); n != 2 {
		t.Errorf("node-1's local publisher has %v subscribers, want 2 (s1, s2)", n)
	}
	if n := f.locals[1].metric(t, peers, "socket", "publisher"); n != 1 {
		t.Errorf("node-2's local publisher has %v subscribers, want 1 (s3)", n)
	}
}

// load is acked calls and casts from two Go clients, counted.
type load struct {
	clients []*rpc.Client
	stop    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	sent    map[string]string // k -> "CALL" or "CAST", once it returned
	errs    []error
	worst   time.Duration // the longest operation
	mark    time.Time
	recover time.Duration // kill to the end of the last operation in flight at it
	n       atomic.Int64
}

func startLoad(t *testing.T, clients []*rpc.Client) *load {
	l := &load{clients: clients, stop: make(chan struct{}), sent: map[string]string{}}
	for w := range 8 {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				k := fmt.Sprintf("w%d-%d", w, i)
				typ := "CALL"
				if i%2 == 1 {
					typ = "CAST"
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				start := time.Now()
				var err error
				cli := l.clients[w%len(l.clients)]
				if typ == "CALL" {
					var raw json.RawMessage
					raw, err = cli.Call(ctx, rpc.Target{Topic: "demo"}, "echo", map[string]any{"k": k})
					if err == nil && !strings.Contains(string(raw), k) {
						err = fmt.Errorf("call %s: reply %s", k, raw)
					}
				} else {
					err = cli.Cast(ctx, rpc.Target{Topic: "demo"}, "echo", map[string]any{"k": k})
				}
				cancel()
				end := time.Now()
				l.mu.Lock()
				if err != nil {
					l.errs = append(l.errs, fmt.Errorf("%s %s: %w", typ, k, err))
				} else {
					l.sent[k] = typ
				}
				if !l.mark.IsZero() && start.Before(l.mark) {
					l.recover = max(l.recover, end.Sub(l.mark))
				}
				l.worst = max(l.worst, end.Sub(start))
				l.mu.Unlock()
				l.n.Add(1)
			}
		}()
	}
	return l
}

// markNow notes the moment of a failure: recover measures from it.
func (l *load) markNow() {
	l.mu.Lock()
	l.mark = time.Now()
	l.mu.Unlock()
}

func (l *load) finish() {
	close(l.stop)
	l.wg.Wait()
}

// check asserts every operation succeeded and every one was handled exactly
// once over the servers: 0 lost, 0 handled twice. A server in killed may
// have handled a message whose ACK died with it, so that the client sent
// it again, rightly, to another: such a message counts as handled once.
// And a server ACKs on receipt (oslo.messaging's rule), so a CAST it
// acknowledged and had not handled when it was killed is lost with it:
// with killed servers, that many lost casts are reported, within the
// bound of what a server holds (its queue and its workers); a lost CALL is
// not (the client sends it again when the server's identity goes).
func (l *load) check(t *testing.T, servers []*echoServer, killed ...*echoServer) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, err := range l.errs {
		if i < 5 {
			t.Errorf("operation failed: %v", err)
		}
	}
	if len(l.errs) > 0 {
		t.Fatalf("%d of %d operations failed", len(l.errs), len(l.errs)+len(l.sent))
	}
	var lost, lostCasts, twice, again int
	prevLost, prevAt := -1, time.Time{}
	testutil.CheckFor(t, metricWait, func() error {
		lost, lostCasts, twice, again = 0, 0, 0, 0
		calls, _ := handled(servers, "CALL")
		casts, _ := handled(servers, "CAST")
		deadCalls, _ := handled(killed, "CALL")
		deadCasts, _ := handled(killed, "CAST")
		for k, typ := range l.sent {
			n, dead := calls[k], deadCalls[k]
			if typ == "CAST" {
				n, dead = casts[k], deadCasts[k]
			}
			switch {
			case n == 0 && dead == 0 && typ == "CAST" && len(killed) > 0:
				lostCasts++
			case n == 0 && dead == 0:
				lost++
			case n > 1 || dead > 1:
				twice++
			case n == 1 && dead == 1:
				again++
			}
		}
		if lost > 0 {
			return fmt.Errorf("%d of %d sent not handled yet", lost, len(l.sent))
		}
		if lostCasts > rpc.DefaultWorkers*5 {
			return fmt.Errorf("%d casts not handled, more than a killed server can hold (%d)", lostCasts, rpc.DefaultWorkers*5)
		}
		// A cast acked by a live server may not be printed yet: the count
		// of lost ones must hold still for a moment.
		if lostCasts != prevLost {
			prevLost, prevAt = lostCasts, time.Now()
			return fmt.Errorf("%d casts not handled yet", lostCasts)
		}
		if lostCasts > 0 && time.Since(prevAt) < 500*time.Millisecond {
			return fmt.Errorf("%d casts not handled yet", lostCasts)
		}
		return nil
	})
	if lostCasts > 0 {
		t.Logf("%d casts acknowledged by the killed server and lost with it", lostCasts)
	}
	if twice > 0 {
		t.Fatalf("%d of %d handled twice", twice, len(l.sent))
	}
	t.Logf("%d calls and casts: 0 lost, 0 handled twice (%d handled by a killed server and again elsewhere); slowest %s; failover %s",
		len(l.sent), again, l.worst.Round(time.Millisecond), l.recover.Round(time.Millisecond))
}

// chaosRun is how long the chaos runs send.
const chaosRun = 10 * time.Second

// Chaos, counted: two clients send acked calls and casts while one central
// proxy is killed with -9 (then, in a second run, stopped with SIGTERM):
// every call returns, every cast is acked, and the servers handle each
// exactly once.
func TestRPCChaosProxyDies(t *testing.T) {
	ours(t)
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			f := startFabric(t, 2, 0)
			servers := threeEchoes(t, f)
			clients := []*rpc.Client{goClient(t, f.etcd, true), goClient(t, f.etcd, true)}
			// The run lasts chaosRun, with the proxy going in the middle: a
			// length of the experiment, not a wait for something.
			l := startLoad(t, clients)
			time.Sleep(chaosRun / 2)
			victim := f.centrals[0]
			victim.stopped = true
			l.markNow()
			_ = victim.cmd.Process.Signal(sig)
			<-victim.done
			before := l.n.Load()
			time.Sleep(chaosRun / 2)
			if n := l.n.Load() - before; n < 100 {
				t.Errorf("only %d operations completed after the %s", n, sig)
			}
			var retries, resent uint64
			for _, c := range clients {
				retries += c.Stats().Retries.Load()
				resent += c.Stats().Resent.Load()
			}
			t.Logf("%s: %d resent at once when the proxy went, %d retried after an ACK timeout", sig, resent, retries)
			l.finish()
			l.check(t, servers)
		})
	}
}

// A server killed with -9: calls to the topic go on to the others while
// its identities expire, and after that the proxies get none for it; a
// new server process under the same name gets calls again.
func TestRPCServerKilled(t *testing.T) {
	ours(t)
	f := startFabric(t, 1, 0)
	servers := []*echoServer{
		startEcho(t, f.etcd, "node-1", "s1", "--target-expire", "2"),
		startEcho(t, f.etcd, "node-1", "s2", "--target-expire", "2"),
	}
	c := goClient(t, f.etcd, true)
	l := startLoad(t, []*rpc.Client{c})
	testutil.CheckFor(t, metricWait, func() error {
		if n := l.n.Load(); n < 100 {
			return fmt.Errorf("%d operations so far", n)
		}
		return nil
	})
	servers[0].kill() // SIGKILL
	l.markNow()
	// Its identity expires with its lease; until then, what was sent to it
	// is retried and then sent to s2.
	p := f.centrals[0]
	testutil.CheckFor(t, metricWait, func() error {
		out, _, _ := runCmd(t, "list", "-u", etcdURL(f.etcd))
		if strings.Contains(out, "demo.s1 ") {
			return errors.New("demo.s1 still registered")
		}
		return nil
	})
	dropped := p.metric(t, "zmqproxy_messages_dropped_total", "reason", "unknown_identity")
	mark := l.n.Load()
	testutil.CheckFor(t, metricWait, func() error {
		if n := l.n.Load(); n < mark+300 {
			return fmt.Errorf("%d operations since s1 expired", n-mark)
		}
		return nil
	})
	if now := p.metric(t, "zmqproxy_messages_dropped_total", "reason", "unknown_identity"); now != dropped {
		t.Errorf("after s1 expired, the proxy dropped %v more messages for unknown identities, want 0", now-dropped)
	}
	restarted := startEcho(t, f.etcd, "node-1", "s1", "--target-expire", "2")
	testutil.CheckFor(t, metricWait, func() error {
		if _, per := handled([]*echoServer{restarted}, "CALL"); per["s1"] == 0 {
			return errors.New("the restarted s1 got no call yet")
		}
		return nil
	})
	l.finish()
	l.check(t, []*echoServer{servers[1], restarted}, servers[0])
}

// The client commands on oslo.messaging's Redis matchmaker: echo-server
// registers DEALER/demo and DEALER/demo/s1, call finds the proxy in
// PUBLISHERS and the server in those sets.
func TestRPCCommandsOnRedis(t *testing.T) {
	ours(t)
	r := testutil.StartRedis(t, testutil.RedisOptions{})
	u := redisURL(r)
	startProxy(t, proxyOpts{registry: []string{"-u", u}})
	startEchoAt(t, u, "node-1", "s1")
	out, errOut, code := runCmd(t, "call", "demo.s1", "echo", `{"v": 1}`, "-u", u)
	if code != 0 || strings.TrimSpace(out) != `{"server": "s1", "v": 1}` {
		t.Fatalf("call on Redis: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if _, errOut, code := runCmd(t, "cast", "demo", "echo", "--acks", "-u", u); code != 0 {
		t.Fatalf("cast --acks on Redis: exit %d: %s", code, errOut)
	}
	dead := testutil.StartRedis(t, testutil.RedisOptions{})
	deadURL := redisURL(dead)
	dead.Kill()
	if _, errOut, code := runCmd(t, "call", "demo", "echo", "-u", deadURL, "--timeout", "1s"); code != 1 || !strings.Contains(errOut, "redis at "+dead.Addr()) {
		t.Fatalf("call with Redis down: exit %d, stderr %q; want 1 naming Redis", code, errOut)
	}
}

// A rolling restart under load: two central proxies, clients of the rpc
// package sending acked calls and casts; one proxy is stopped, started
// again, then the other. With SIGTERM the proxy drains (its record goes
// first, it routes on until its peers are quiet); with kill -9 it does
// not. Both lose nothing and handle nothing twice; the drain saves the
// clients' resends, and the test prints both counts.
func TestRPCRollingRestart(t *testing.T) {
	ours(t)
	resends := map[syscall.Signal]uint64{}
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			f := startFabric(t, 2, 0)
			servers := threeEchoes(t, f)
			clients := []*rpc.Client{goClient(t, f.etcd, true), goClient(t, f.etcd, true)}
			for _, p := range f.centrals {
				p.waitExactly(t, 2, peers, "socket", "frontend")
			}
			l := startLoad(t, clients)
			for i := range f.centrals {
				old := f.centrals[i]
				mark := l.n.Load()
				testutil.CheckFor(t, metricWait, func() error {
					if n := l.n.Load(); n < mark+300 {
						return fmt.Errorf("%d operations since the last step", n-mark)
					}
					return nil
				})
				old.stopped = true
				_ = old.cmd.Process.Signal(sig)
				<-old.done
				if sig == syscall.SIGTERM && old.waitErr != nil {
					t.Fatalf("proxy exited with %v after SIGTERM\n%s", old.waitErr, old.log)
				}
				// The same proxy again (a new process, new ports), found
				// in the registry by clients and servers.
				p := startProxy(t, f.centralOpts(fmt.Sprintf("central-%d", i+1)))
				p.waitExactly(t, 2, peers, "socket", "frontend")
				p.waitExactly(t, 3, peers, "socket", "backend")
				f.centrals[i] = p
			}
			mark := l.n.Load()
			testutil.CheckFor(t, metricWait, func() error {
				if n := l.n.Load(); n < mark+300 {
					return fmt.Errorf("%d operations after the restarts", n-mark)
				}
				return nil
			})
			l.finish()
			l.check(t, servers)
			var retries, resent uint64
			for _, c := range clients {
				retries += c.Stats().Retries.Load()
				resent += c.Stats().Resent.Load()
			}
			resends[sig] = retries + resent
			t.Logf("%s: %d sent again (%d at once as a proxy went, %d after an ACK timeout)", sig, retries+resent, resent, retries)
		})
	}
	t.Logf("rolling restart: %d messages sent again with the drain (SIGTERM), %d with kill -9",
		resends[syscall.SIGTERM], resends[syscall.SIGKILL])
}
