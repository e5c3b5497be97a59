package e2e

// The fault table: acked delivery of the rpc package under every fault,
// proven by histories.
//
// Run it, and print the table, with
//
//	go test ./e2e -run TestFaults -v -count=1
//
// (the last lines of the output; each cell also logs its own rows). Each
// cell is a fresh deployment of real processes: a registry (an etcd-server
// process, or a redis-server with oslo.messaging's Redis matchmaker), two
// central proxies and two echo-servers (the binary, --acks, --record),
// under a load from this process: two rpc.Clients with Acks, each with
// echoWorkers goroutines sending CALLs and CASTs of echo and sleepWorkers
// sending CALLs and CASTs of sleep (sleepFor), one operation outstanding
// per goroutine, every one with args {"seq": N}, N unique. The load runs
// faultBefore, then the fault is injected (and lasts as long as it
// lasts), then the load runs faultAfter more and stops.
//
// The history is the client's record of every operation (start, end,
// error, reply) and the servers' record files (a line per handler run,
// written before the handler runs, so a kill -9 loses none). Per cell and
// kind (call, cast):
//
//   - ops: operations sent;
//   - lost: operations that ended in an error (any: ErrTimeout, ErrNoServer,
//     a remote failure...), plus operations that returned nil and that no
//     server ever handled; listed by error in the cell's log;
//   - twice: operations whose seq was handled more than once, by one server
//     or two;
//   - wrong: calls whose reply is not the echo of their own arguments by
//     one of the servers;
//   - acked-lost: casts that returned nil before a server was killed -9 and
//     that no server handled: the documented loss (an ACK says "received",
//     as in oslo.messaging, so a cast ACKed and not yet handled dies with
//     its server). Counted only in that cell, bounded by what a server
//     holds; anywhere else such a cast is lost;
//   - redone: operations that the server killed -9 had started (its
//     record has them) and that another server handled again: the other
//     documented case (rpc/doc.go: the memory of ids is the server's own,
//     so a message whose ACK or reply died with it is sent to another
//     server, rightly, or a call would be lost). Counted only in that
//     cell, bounded by what a server holds; anywhere else they are twice;
//   - failover: the longest time any operation waited from the fault on,
//     that is max over operations ending after the fault instant F of
//     end - max(start, F), less the handler's own sleep for sleep calls. It
//     is how long the fault stalled a caller: an operation queued to a dead
//     or hung proxy or server waits until the client sends it elsewhere.
//
// Every cell asserts 0 lost, 0 twice, 0 wrong and failover within
// failoverBound; acked-lost and redone within ackedLostBound in the kill
// -9 server cell. Nothing is skipped: a cell that fails is a delivery bug
// (issue 15).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
	"github.com/zmq-proxy/zmq-proxy/registry"
	redismm "github.com/zmq-proxy/zmq-proxy/registry/redis"
	"github.com/zmq-proxy/zmq-proxy/rpc"
)

// The shape of a cell's load and run. The durations are lengths of the
// experiment, not waits for something.
const (
	faultBefore    = 3 * time.Second  // load before the fault
	faultAfter     = 4 * time.Second  // load after the fault is over
	faultOpTimeout = 20 * time.Second // each operation's context
	echoWorkers    = 4                // per client: echo calls and casts, alternately
	sleepWorkers   = 2                // per client: sleep calls and casts, alternately
	sleepFor       = 500 * time.Millisecond
	// failoverBound bounds every cell's failover. Issue 15 asks for a
	// failover within 1 s from a hung proxy and well under the ACK timeout
	// from a killed server; the bound adds 1 s for a loaded 2-core machine
	// running -race binaries (the cells that pass measure 15–125 ms
	// there). It is the default ACK timeout: a client that finds a fault
	// only by missing an ACK fails it.
	failoverBound = rpc.DefaultAckTimeout
	// ackedLostBound bounds the casts a server killed -9 had ACKed and not
	// handled: its queue and its workers (rpc's 4×Workers and Workers).
	ackedLostBound = 5 * rpc.DefaultWorkers
	// afterBound: a cast that returned this long after the kill cannot
	// have been ACKed by the killed server (the ACK left before the kill
	// and crossed a proxy on loopback).
	afterBound = 200 * time.Millisecond
	// settleFor: the servers' records are complete when they have not
	// grown for this long after the load stopped.
	settleFor = 1500 * time.Millisecond
)

// faultCell is one fault: inject does it (sending the signal, waiting out
// its length, undoing it) and returns when it ends and when it is over.
type faultCell struct {
	name   string
	redis  bool // the Redis registry instead of etcd
	inject func(t *testing.T, env *faultEnv, l *faultLoad) (at, over time.Time)
	// killedServer: the cell kills a server with -9; casts it ACKed and
	// had not handled are acked-lost, not lost.
	killedServer bool
}

func TestFaults(t *testing.T) {
	ours(t)
	cells := []faultCell{
		{name: "proxy kill -9", inject: func(t *testing.T, env *faultEnv, _ *faultLoad) (time.Time, time.Time) {
			p := env.proxies[0]
			p.stopped = true
			at := time.Now()
			p.kill()
			return at, at
		}},
		{name: "proxy SIGSTOP 10s", inject: func(t *testing.T, env *faultEnv, _ *faultLoad) (time.Time, time.Time) {
			p := env.proxies[0]
			t.Cleanup(func() { _ = p.cmd.Process.Signal(syscall.SIGCONT) })
			at := time.Now()
			if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Second) // the fault's length
			if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
			return at, time.Now()
		}},
		{name: "proxy SIGTERM", inject: func(t *testing.T, env *faultEnv, _ *faultLoad) (time.Time, time.Time) {
			p := env.proxies[0]
			p.stopped = true
			at := time.Now()
			waitExit(t, "proxy", p.process, syscall.SIGTERM, p.log)
			return at, time.Now()
		}},
		{name: "server kill -9", killedServer: true, inject: func(t *testing.T, env *faultEnv, _ *faultLoad) (time.Time, time.Time) {
			at := time.Now()
			env.servers[0].kill()
			return at, at
		}},
		{name: "server SIGTERM, sleeps running", inject: func(t *testing.T, env *faultEnv, l *faultLoad) (time.Time, time.Time) {
			s := env.servers[0]
			// Stop it while it runs a sleep that a caller waits for.
			var n int
			testutil.CheckFor(t, metricWait, func() error {
				if n = l.runningSleeps(t, s); n == 0 {
					return fmt.Errorf("%s runs no sleep call now", s.name)
				}
				return nil
			})
			at := time.Now()
			t.Logf("SIGTERM to %s while it runs %d sleep calls of %v", s.name, n, sleepFor)
			waitExit(t, "echo-server "+s.name, s.process, syscall.SIGTERM, s.log)
			return at, time.Now()
		}},
		{name: "etcd stopped 8s", inject: func(t *testing.T, env *faultEnv, _ *faultLoad) (time.Time, time.Time) {
			at := time.Now()
			env.etcd.Kill(0)
			time.Sleep(8 * time.Second) // the fault's length
			env.etcd.Start(0)
			return at, time.Now()
		}},
		{name: "redis stopped 8s", redis: true, inject: func(t *testing.T, env *faultEnv, _ *faultLoad) (time.Time, time.Time) {
			at := time.Now()
			env.redis.Kill()
			time.Sleep(8 * time.Second) // the fault's length
			env.redis.Start()
			return at, time.Now()
		}},
	}
	var table []faultRow
	for _, c := range cells {
		t.Run(strings.NewReplacer(" ", "_", ",", "").Replace(c.name), func(t *testing.T) {
			rows := runFaultCell(t, c)
			table = append(table, rows...)
			for _, r := range rows {
				t.Logf("%s", r)
			}
		})
	}
	t.Logf("fault table (failover: the longest an operation waited from the fault on; bound %v):\n%s", failoverBound, formatFaultTable(table))
}

// waitExit sends sig to p and waits until it exits, which must be with
// status 0; after stopTimeout×6 it is killed and the test fails.
func waitExit(t *testing.T, what string, p *process, sig syscall.Signal, log *lineBuffer) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("%v to %s: %v", sig, what, err)
	}
	select {
	case <-p.done:
		if p.waitErr != nil {
			t.Errorf("%s exited with %v after %v, want status 0\n%s", what, p.waitErr, sig, log)
		}
	case <-time.After(6 * stopTimeout):
		p.kill()
		t.Errorf("%s did not exit within %v of %v; killed\n%s", what, 6*stopTimeout, sig, log)
	}
}

// faultEnv is a cell's deployment.
type faultEnv struct {
	etcd    *testutil.EtcdCluster // or
	redis   *testutil.Redis
	proxies []*proxy
	servers []*faultServer
	clients []*rpc.Client
}

// faultServer is an echo-server process that records its handler runs.
type faultServer struct {
	*process
	name   string
	record string // its --record file
	log    *lineBuffer
}

// startFaultServer runs "zmq-proxy echo-server demo NAME --acks --record
// FILE" (its stdout, a line per message, is not read) and waits until it
// is registered.
func startFaultServer(t *testing.T, u, name string) *faultServer {
	t.Helper()
	s := &faultServer{name: name, record: filepath.Join(t.TempDir(), name+".record"), log: newLineBuffer()}
	cmd := exec.Command(binPath, "echo-server", "demo", name, "-u", u, "--name", "node-1", "--timeout", "20s",
		"--acks", "--record", s.record)
	s.process = startProcess(t, cmd, nil, s.log)
	t.Cleanup(func() {
		if !s.exited() {
			_ = s.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-s.done:
			case <-time.After(stopTimeout):
			}
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

// startFaultEnv starts a cell's registry, proxies, servers and clients and
// waits until every client and server is connected to both proxies.
func startFaultEnv(t *testing.T, onRedis bool) *faultEnv {
	t.Helper()
	env := &faultEnv{}
	var u string
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	newClient := func(i int) rpc.ClientConfig {
		return rpc.ClientConfig{Host: fmt.Sprintf("client-%d", i), Acks: true, Logger: quiet}
	}
	var configs []rpc.ClientConfig
	if onRedis {
		env.redis = testutil.StartRedis(t, testutil.RedisOptions{})
		u = redisURL(env.redis)
		for i := range 2 {
			mm := redismm.New(redismm.Config{Addr: env.redis.Addr(), Logger: quiet})
			t.Cleanup(func() { mm.Close() })
			cfg := newClient(i)
			cfg.Registry = registry.NewRedis(mm, registry.Options{})
			configs = append(configs, cfg)
		}
	} else {
		env.etcd = testutil.Cluster(t, 1)
		u = "zmq+etcd://" + strings.TrimPrefix(env.etcd.Endpoint(0), "http://") + "/"
		cli, err := registry.NewClient(registry.ClientConfig{Endpoints: env.etcd.Endpoints()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cli.Close() })
		for i := range 2 {
			cfg := newClient(i)
			cfg.Registry = registry.NewEtcd(cli, registry.Options{})
			configs = append(configs, cfg)
		}
	}
	for i := range 2 {
		env.proxies = append(env.proxies, startProxy(t, proxyOpts{registry: []string{"-u", u},
			args: []string{"--name", fmt.Sprintf("central-%d", i+1)}}))
	}
	for i := range 2 {
		env.servers = append(env.servers, startFaultServer(t, u, fmt.Sprintf("s%d", i+1)))
	}
	for _, cfg := range configs {
		ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
		c, err := rpc.NewClient(ctx, cfg)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		env.clients = append(env.clients, c)
	}
	for _, p := range env.proxies {
		p.waitExactly(t, 2, peers, "socket", "frontend")
		p.waitExactly(t, 2, peers, "socket", "backend")
	}
	return env
}

// faultOp is one operation of the load and how it ended.
type faultOp struct {
	seq        int64
	kind       string // "call" or "cast"
	method     string // "echo" or "sleep"
	start, end time.Time
	err        error
	reply      json.RawMessage
}

// faultLoad sends the operations and keeps every one.
type faultLoad struct {
	stop    chan struct{}
	wg      sync.WaitGroup
	seq     atomic.Int64
	handled atomic.Int64 // operations ended without error

	mu  sync.Mutex
	ops []*faultOp // in the order they started; end and err set under mu
}

func startFaultLoad(clients []*rpc.Client) *faultLoad {
	l := &faultLoad{stop: make(chan struct{})}
	for _, c := range clients {
		for w := range echoWorkers + sleepWorkers {
			method := "echo"
			if w >= echoWorkers {
				method = "sleep"
			}
			l.wg.Go(func() { l.work(c, method) })
		}
	}
	return l
}

func (l *faultLoad) work(c *rpc.Client, method string) {
	target := rpc.Target{Topic: "demo"}
	for i := 0; ; i++ {
		select {
		case <-l.stop:
			return
		default:
		}
		op := &faultOp{seq: l.seq.Add(1), kind: "call", method: method, start: time.Now()}
		if i%2 == 1 {
			op.kind = "cast"
		}
		args := map[string]any{"seq": op.seq}
		if method == "sleep" {
			args["ms"] = sleepFor.Milliseconds()
		}
		l.mu.Lock()
		l.ops = append(l.ops, op)
		l.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), faultOpTimeout)
		var reply json.RawMessage
		var err error
		if op.kind == "call" {
			reply, err = c.Call(ctx, target, method, args)
		} else {
			err = c.Cast(ctx, target, method, args)
		}
		cancel()
		l.mu.Lock()
		op.end, op.err, op.reply = time.Now(), err, reply
		l.mu.Unlock()
		if err == nil {
			l.handled.Add(1)
		}
	}
}

func (l *faultLoad) finish() {
	close(l.stop)
	l.wg.Wait()
}

// runningSleeps is how many sleep calls s has started (its record says
// so) whose callers still wait.
func (l *faultLoad) runningSleeps(t *testing.T, s *faultServer) int {
	runs := readRecord(t, s)
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, op := range l.ops {
		if op.method == "sleep" && op.kind == "call" && op.end.IsZero() && runs[op.seq] > 0 {
			n++
		}
	}
	return n
}

// readRecord counts s's handler runs by seq.
func readRecord(t *testing.T, s *faultServer) map[int64]int {
	t.Helper()
	b, err := os.ReadFile(s.record)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	runs := map[int64]int{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 5 {
			continue // the last, empty one
		}
		seq, err := strconv.ParseInt(f[4], 10, 64)
		if err != nil {
			t.Fatalf("%s: record line %q: seq %v", s.record, line, err)
		}
		runs[seq]++
	}
	return runs
}

// faultRow is one line of the table: a cell's calls or casts.
type faultRow struct {
	cell, kind                             string
	ops, lost, twice, wrong, acked, redone int
	failover                               time.Duration
	errs                                   map[string]int // lost by cause
}

func (r faultRow) String() string {
	var causes []string
	for _, k := range slices.Sorted(maps.Keys(r.errs)) {
		causes = append(causes, fmt.Sprintf("%s=%d", k, r.errs[k]))
	}
	s := fmt.Sprintf("%-32s %-4s %7d %6d %6d %6d %10d %6d %9d", r.cell, r.kind, r.ops, r.lost, r.twice, r.wrong, r.acked, r.redone, r.failover.Milliseconds())
	if len(causes) > 0 {
		s += "  lost: " + strings.Join(causes, " ")
	}
	return s
}

func formatFaultTable(rows []faultRow) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-32s %-4s %7s %6s %6s %6s %10s %6s %9s\n", "fault", "kind", "ops", "lost", "twice", "wrong", "acked-lost", "redone", "failover")
	for _, r := range rows {
		fmt.Fprintf(&b, "%s\n", r)
	}
	return b.String()
}

// errCause names an operation's error for the table.
func errCause(err error) string {
	var re *rpc.RemoteError
	switch {
	case errors.As(err, &re):
		return "remote:" + re.Class
	case errors.Is(err, rpc.ErrNoServer):
		return "no-server"
	case errors.Is(err, rpc.ErrNoProxy):
		return "no-proxy"
	case errors.Is(err, rpc.ErrNoAck):
		return "no-ack"
	case errors.Is(err, rpc.ErrBusy):
		return "busy"
	case errors.Is(err, rpc.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, rpc.ErrClosed):
		return "closed"
	default:
		return "other"
	}
}

// runFaultCell runs one cell and checks its history.
func runFaultCell(t *testing.T, c faultCell) []faultRow {
	env := startFaultEnv(t, c.redis)
	l := startFaultLoad(env.clients)
	stopped := false
	defer func() {
		if !stopped {
			l.finish()
		}
	}()
	time.Sleep(faultBefore) // the experiment's length before the fault
	// Both servers take part before the fault.
	testutil.CheckFor(t, metricWait, func() error {
		for _, s := range env.servers {
			if len(readRecord(t, s)) == 0 {
				return fmt.Errorf("%s handled nothing yet", s.name)
			}
		}
		return nil
	})
	at, over := c.inject(t, env, l)
	afterFault := l.handled.Load()
	time.Sleep(faultAfter) // the experiment's length after the fault
	l.finish()
	stopped = true
	if n := l.handled.Load() - afterFault; n < 100 {
		t.Errorf("only %d operations completed in the %v after the fault", n, faultAfter)
	}

	// The servers' records are complete once they stop growing (a hung
	// proxy's backlog comes in late).
	var runs map[int64][]string // seq -> servers, one per run
	var total int
	stableSince := time.Now()
	testutil.CheckFor(t, metricWait, func() error {
		now, n := map[int64][]string{}, 0
		for _, s := range env.servers {
			for seq, k := range readRecord(t, s) {
				for range k {
					now[seq] = append(now[seq], s.name)
				}
				n += k
			}
		}
		if n != total {
			runs, total, stableSince = now, n, time.Now()
		}
		if d := time.Since(stableSince); d < settleFor {
			return fmt.Errorf("the records grew %v ago", d.Round(time.Millisecond))
		}
		return nil
	})

	rows := map[string]*faultRow{}
	for _, kind := range []string{"call", "cast"} {
		rows[kind] = &faultRow{cell: c.name, kind: kind, errs: map[string]int{}}
	}
	servers := map[string]bool{}
	for _, s := range env.servers {
		servers[s.name] = true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var examples []string
	example := func(format string, args ...any) {
		if len(examples) < 10 {
			examples = append(examples, fmt.Sprintf(format, args...))
		}
	}
	for _, op := range l.ops {
		r := rows[op.kind]
		r.ops++
		n := len(runs[op.seq])
		switch {
		case op.err != nil:
			r.lost++
			r.errs[errCause(op.err)]++
			example("%s %s seq %d: %v after %v (handled %d times)", op.kind, op.method, op.seq, op.err,
				op.end.Sub(op.start).Round(time.Millisecond), n)
		case n == 0 && c.killedServer && op.kind == "cast" && op.end.Before(at.Add(afterBound)):
			r.acked++
		case n == 0:
			r.lost++
			r.errs["never-handled"]++
			example("%s %s seq %d returned nil at %v and was never handled", op.kind, op.method, op.seq, op.end.Sub(at).Round(time.Millisecond))
		}
		switch {
		case n == 2 && c.killedServer && slices.Contains(runs[op.seq], env.servers[0].name) &&
			!slices.Equal(runs[op.seq], []string{env.servers[0].name, env.servers[0].name}):
			r.redone++
		case n > 1:
			r.twice++
			example("%s %s seq %d handled %d times, by %v", op.kind, op.method, op.seq, n, runs[op.seq])
		}
		if op.kind == "call" && op.err == nil {
			var reply struct {
				Seq    int64
				Server string
				MS     *int64
			}
			err := json.Unmarshal(op.reply, &reply)
			wantMS := op.method == "sleep"
			if err != nil || reply.Seq != op.seq || !servers[reply.Server] || (reply.MS != nil) != wantMS {
				r.wrong++
				example("call %s seq %d: wrong reply %s", op.method, op.seq, op.reply)
			}
		}
		if op.end.After(at) {
			wait := op.end.Sub(op.start)
			if op.start.Before(at) {
				wait = op.end.Sub(at)
			}
			if op.method == "sleep" && op.kind == "call" {
				wait = max(0, wait-sleepFor)
			}
			r.failover = max(r.failover, wait)
		}
	}
	for _, e := range examples {
		t.Logf("  %s", e)
	}
	// When the errors came, and the operation that waited longest: what
	// the lead needs to tell a bug from another.
	var firstErr, lastErr time.Time
	var slowest *faultOp
	slowWait := time.Duration(-1)
	for _, op := range l.ops {
		if op.err != nil {
			if firstErr.IsZero() || op.end.Before(firstErr) {
				firstErr = op.end
			}
			if op.end.After(lastErr) {
				lastErr = op.end
			}
		}
		if op.end.After(at) {
			from := op.start
			if from.Before(at) {
				from = at
			}
			w := op.end.Sub(from)
			if op.method == "sleep" && op.kind == "call" {
				w -= sleepFor
			}
			if w > slowWait {
				slowest, slowWait = op, w
			}
		}
	}
	if !firstErr.IsZero() {
		t.Logf("  errors from %+v to %+v after the fault", firstErr.Sub(at).Round(time.Millisecond), lastErr.Sub(at).Round(time.Millisecond))
	}
	if slowest != nil {
		t.Logf("  slowest from the fault on: %s %s seq %d, sent at %+v, ended at %+v after the fault (%v), handled by %v, reply %s",
			slowest.kind, slowest.method, slowest.seq, slowest.start.Sub(at).Round(time.Millisecond), slowest.end.Sub(at).Round(time.Millisecond),
			slowest.err, runs[slowest.seq], slowest.reply)
	}
	t.Logf("%s: fault at +%v, over after %v", c.name, faultBefore, over.Sub(at).Round(time.Millisecond))
	var out []faultRow
	for _, kind := range []string{"call", "cast"} {
		r := rows[kind]
		if r.lost > 0 || r.twice > 0 || r.wrong > 0 {
			t.Errorf("%s, %ss: %d of %d lost, %d handled twice, %d wrong replies; want 0, 0, 0", c.name, kind, r.lost, r.ops, r.twice, r.wrong)
		}
		if r.acked > ackedLostBound {
			t.Errorf("%s, %ss: %d casts ACKed by the killed server and never handled, more than it holds (%d)", c.name, kind, r.acked, ackedLostBound)
		}
		if r.redone > ackedLostBound {
			t.Errorf("%s, %ss: %d started by the killed server and handled again, more than it holds (%d)", c.name, kind, r.redone, ackedLostBound)
		}
		if r.failover > failoverBound {
			t.Errorf("%s, %ss: failover %v, want at most %v", c.name, kind, r.failover.Round(time.Millisecond), failoverBound)
		}
		out = append(out, *r)
	}
	return out
}
