// Package bench is "zmq-proxy bench": load through a running deployment
// with the rpc package's clients, and, unless a target is given, its own
// rpc servers, which count what was lost and what duplicated.
package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/zmq-proxy/zmq-proxy/internal/logging"
	"github.com/zmq-proxy/zmq-proxy/rpc"
)

// benchResult is what bench prints; with --json, as one object.
type benchResult struct {
	Mode        string  `json:"mode"`
	Clients     int     `json:"clients"`
	Outstanding int     `json:"outstanding"`
	Servers     int     `json:"servers"`
	Size        int     `json:"size"`
	Acks        bool    `json:"acks"`
	Window      int     `json:"window,omitempty"` // cast and fanout to the bench's servers
	Sent        uint64  `json:"sent"`             // operations that succeeded at the client
	Failed      uint64  `json:"failed"`           // operations that returned an error
	Seconds     float64 `json:"seconds"`
	Rate        float64 `json:"rate"` // sent per second
	// Latency says what P50, P99 and P999 measure (measure.go):
	// "round_trip" (call), "delivery" (cast and fanout to the bench's
	// servers: send to handler, per message and server) or "send_return"
	// (cast and fanout with --target: how long the send took to return).
	Latency string  `json:"latency"`
	P50     float64 `json:"p50_us"`
	P99     float64 `json:"p99_us"`
	P999    float64 `json:"p999_us"`
	// SendP50 and SendP99: how long Cast or Fanout took to return.
	SendP50 float64 `json:"send_p50_us"`
	SendP99 float64 `json:"send_p99_us"`
	// CPUPerMsg: the bench process's CPU (its clients and servers, not
	// the proxies) per message sent, in µs.
	CPUPerMsg float64 `json:"cpu_us_per_msg"`
	// Lost: sent (× servers for fanout) but never handled; Duplicated:
	// handler runs beyond the first per message. Counted at the bench's
	// own servers; with --target, lost is the failed operations and
	// duplicated is not known (-1).
	Lost       int64 `json:"lost"`
	Duplicated int64 `json:"duplicated"`
	// Stalled: times the window was full and nothing was handled for
	// --timeout, so the bench emptied it and went on.
	Stalled    int    `json:"stalled,omitempty"`
	FirstError string `json:"first_error,omitempty"`
}

// tally counts handler runs per (server, message). The bench numbers its
// messages: each carries "seq" first in its arguments, and the runs of
// each server are counted in an array indexed by it (a map keyed by
// message id cost a cache miss per message, a sixth of the bench's CPU).
// A message without a seq (a probe) is counted by its id. A first run
// frees one place in the window, if there is one.
type tally struct {
	servers []seqCounts
	firsts  atomic.Int64 // (server, message) pairs run at least once
	all     atomic.Int64 // handler runs

	mu    sync.Mutex
	other map[string]uint32 // runs of messages without a seq, by server and id

	window chan struct{} // one token per delivery in flight; nil: no window

	delivery latHist // send to first handler run, per (server, message)

	lastAll  int64 // unstall's: handler runs when last seen moving
	lastMove time.Time
}

// seqCounts are one server's runs per seq, in chunks allocated as the
// seqs come.
type seqCounts struct {
	mu     sync.Mutex
	chunks [][]uint8
}

const seqChunk = 1 << 16

func newTally(servers int, window chan struct{}) *tally {
	return &tally{servers: make([]seqCounts, servers), other: make(map[string]uint32), window: window, lastMove: time.Now()}
}

// add counts a run of m by server.
func (t *tally) add(server int, m *rpc.Message) {
	first := false
	if seq, ok := seqOf(m.Args); ok && server < len(t.servers) {
		sc := &t.servers[server]
		sc.mu.Lock()
		for int(seq/seqChunk) >= len(sc.chunks) {
			sc.chunks = append(sc.chunks, nil)
		}
		c := &sc.chunks[seq/seqChunk]
		if *c == nil {
			*c = make([]uint8, seqChunk)
		}
		n := &(*c)[seq%seqChunk]
		first = *n == 0
		if *n < 255 {
			*n++
		}
		sc.mu.Unlock()
	} else {
		k := fmt.Sprint(server, " ", m.MessageID)
		t.mu.Lock()
		t.other[k]++
		first = t.other[k] == 1
		t.mu.Unlock()
	}
	t.all.Add(1)
	if first {
		if sent, ok := sentOf(m.Args); ok {
			t.delivery.record(time.Duration(benchNow() - sent))
		}
		t.firsts.Add(1)
		if t.window != nil {
			select {
			case <-t.window:
			default:
			}
		}
	}
}

// unstall empties a full window in which nothing was handled for
// timeout (what it waits for is lost), so that the run goes on; it
// reports whether it did. Called every second.
func (t *tally) unstall(timeout time.Duration) bool {
	if t.window == nil {
		return false
	}
	now, all := time.Now(), t.all.Load()
	if all != t.lastAll || len(t.window) < cap(t.window) {
		t.lastAll, t.lastMove = all, now
		return false
	}
	if now.Sub(t.lastMove) < timeout {
		return false
	}
	for len(t.window) > 0 {
		<-t.window
	}
	t.lastMove = now
	return true
}

// enter waits for room for n deliveries in the window; false when stop
// closes first.
func (t *tally) enter(n int, stop <-chan struct{}) bool {
	if t.window == nil {
		return true
	}
	for range n {
		select {
		case t.window <- struct{}{}:
		case <-stop:
			return false
		}
	}
	return true
}

func (t *tally) distinct() int64 { return t.firsts.Load() }

// Config is one bench run.
type Config struct {
	Mode        string // call, cast or fanout
	Clients     int    // rpc clients
	Outstanding int    // operations in flight per client
	Servers     int    // the bench's own servers, unless Target
	Target      string // a topic served elsewhere; "" = the bench's own servers
	Size        int    // bytes of data per message
	Duration    time.Duration
	Count       int    // operations in all; 0 = for Duration
	Window      int    // cast and fanout: deliveries in flight per client; 0 = no window
	Acks        bool   // the servers send ACKs (rpc_use_acks)
	JSON        bool   // print the result as one JSON object
	Debug       bool   // the clients and servers log at their own level, not warnings only
	CPUProfile  string // write the bench process's CPU profile during the run here; "" = none
	// Timeout bounds each call, the start of the servers and clients, and
	// how long the counts may take to settle.
	Timeout time.Duration
	// Client is the clients' configuration (registry, prefix, host, acks);
	// the servers use its registry, prefix and host.
	Client rpc.ClientConfig
}

// Run runs the bench and prints its result on stdout, progress on stderr
// when it is a terminal; it returns the exit code.
func Run(ctx context.Context, c Config, stdout, stderr io.Writer) int {
	r := newRun(c)
	defer r.close()
	if err := r.start(ctx); err != nil {
		fmt.Fprintf(stderr, "zmq-proxy bench: %v\n", err)
		return 1
	}
	if err := r.load(ctx, stderr); err != nil {
		fmt.Fprintf(stderr, "zmq-proxy bench: %v\n", err)
		return 2
	}
	r.settle(ctx)
	r.res.print(stdout, c.JSON)
	return 0
}

// run is one bench run under way.
type run struct {
	c      Config
	log    *slog.Logger
	res    benchResult
	weight int // deliveries per message
	window chan struct{}
	topic  string
	// The servers' handlers count in the tally of the moment: the probes'
	// one, then the run's.
	tallyNow atomic.Pointer[tally]
	counts   *tally // the run's
	servers  []*rpc.Server
	clients  []*rpc.Client
	sent     atomic.Uint64
	failed   atomic.Uint64

	// The workers' shared state (load).
	data     string // --size bytes of data, after each message's seq
	seq      atomic.Uint64
	issued   atomic.Uint64
	firstErr atomic.Value
	stop     chan struct{} // closed when the time is up
	opCtx    context.Context
	op       func(opCtx context.Context, cli *rpc.Client, payload json.RawMessage) error
}

func newRun(c Config) *run {
	log := c.Client.Logger
	if !c.Debug { // the bench's own servers and clients: warnings only
		log = slog.New(logging.MinLevel{Handler: log.Handler(), Level: slog.LevelWarn})
	}
	c.Client.Logger = log
	r := &run{c: c, log: log, topic: c.Target, weight: 1,
		res: benchResult{Mode: c.Mode, Clients: c.Clients, Outstanding: c.Outstanding, Size: c.Size, Acks: c.Acks}}
	// Cast and fanout without acks would outrun the servers and lose at
	// the proxy's high-water mark what they cannot take: the bench's own
	// servers tell it what they handled, and each client keeps at most
	// --window deliveries in flight (loadgen's flow control).
	if c.Mode == "fanout" {
		r.weight = c.Servers
	}
	if c.Mode != "call" && c.Target == "" && c.Window > 0 {
		r.window = make(chan struct{}, c.Window*c.Clients*r.weight)
		r.res.Window = c.Window
	}
	r.tallyNow.Store(newTally(c.Servers, r.window))
	return r
}

// start starts the bench's servers (unless a target is given) and its
// clients, and for fanout waits until every server is subscribed.
func (r *run) start(ctx context.Context) error {
	if r.topic == "" {
		r.topic = "bench-" + uuid.NewString()[:8]
		r.res.Servers = r.c.Servers
		for i := range r.c.Servers {
			if err := r.startServer(ctx, i); err != nil {
				return err
			}
		}
	}
	for range r.c.Clients {
		cctx, cancel := context.WithTimeout(ctx, r.c.Timeout)
		cfg := r.c.Client
		cfg.CallTimeout = r.c.Timeout
		cli, err := rpc.NewClient(cctx, cfg)
		cancel()
		if err != nil {
			return err
		}
		r.clients = append(r.clients, cli)
	}
	if r.c.Mode == "fanout" && r.res.Servers > 0 {
		if err := r.probeFanout(ctx); err != nil {
			return err
		}
	}
	r.counts = r.tallyNow.Load()
	return nil
}

// startServer starts the bench's server i, which counts what it handles.
func (r *run) startServer(ctx context.Context, i int) error {
	c := r.c
	name := fmt.Sprintf("b%d", i)
	sctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	srv, err := rpc.NewServer(sctx, rpc.ServerConfig{Registry: c.Client.Registry, Host: c.Client.Host,
		Topic: r.topic, Server: name, Logger: r.log, Workers: 4 * c.Outstanding,
		// As oslo.messaging's servers: ACKs only with rpc_use_acks.
		Acks: c.Acks,
		Handlers: map[string]rpc.Handler{
			"echo": func(_ context.Context, m *rpc.Message) (any, error) {
				r.tallyNow.Load().add(i, m)
				return nil, nil
			},
			"probe": func(context.Context, *rpc.Message) (any, error) { return nil, nil },
		},
		Observe: func(m *rpc.Message) {
			if m.Method == "probe" {
				r.tallyNow.Load().add(i, &rpc.Message{MessageID: "probe"})
			}
		}})
	if err != nil {
		return err
	}
	r.servers = append(r.servers, srv)
	return nil
}

// probeFanout waits until every server has a subscription: it reaches the
// publishers after the connection. It probes until each server has had
// one, then counts from there.
func (r *run) probeFanout(ctx context.Context) error {
	deadline := time.Now().Add(r.c.Timeout)
	for r.tallyNow.Load().distinct() < int64(r.res.Servers) {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("not every server got a fanout probe within %s", r.c.Timeout)
		}
		_ = r.clients[0].Fanout(ctx, r.topic, "probe", nil)
		time.Sleep(20 * time.Millisecond)
	}
	r.tallyNow.Store(newTally(r.c.Servers, r.window))
	return nil
}

// close closes the clients, then the servers.
func (r *run) close() {
	for i := len(r.clients) - 1; i >= 0; i-- {
		r.clients[i].Close()
	}
	for i := len(r.servers) - 1; i >= 0; i-- {
		r.servers[i].Close()
	}
}

// load runs Clients×Outstanding workers for Duration (or Count
// operations), until ctx is done, and measures them.
func (r *run) load(ctx context.Context, stderr io.Writer) error {
	c := r.c
	// Each message's arguments carry its number (seq) before --size bytes
	// of data, for the tally.
	r.data = strings.Repeat("x", c.Size)
	r.op = r.operation(ctx)
	r.stop = make(chan struct{})
	opCtx, cancelOps := context.WithCancel(ctx)
	defer cancelOps()
	r.opCtx = opCtx
	// A call is bounded by the clients' CallTimeout (--timeout). A cast or
	// fanout waits only when no proxy is connected: it is given up
	// --timeout after the run ends (a context per operation, with its
	// timer, was a tenth of a cast's cost).
	go func() {
		select {
		case <-r.stop:
			t := time.AfterFunc(c.Timeout, cancelOps)
			<-opCtx.Done()
			t.Stop()
		case <-opCtx.Done():
		}
	}()

	var wg sync.WaitGroup
	lats := make([][]time.Duration, c.Clients*c.Outstanding)
	stopProfile, err := startCPUProfile(c.CPUProfile)
	if err != nil {
		return err
	}
	cpu0 := processCPU()
	start := time.Now()
	for i := range lats {
		cli := r.clients[i%len(r.clients)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.worker(cli, &lats[i])
		}()
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	r.wait(ctx, start, r.stop, finished, stderr)
	elapsed := time.Since(start)
	cpu := processCPU() - cpu0
	stopProfile()

	res := &r.res
	res.Sent, res.Failed, res.Seconds = r.sent.Load(), r.failed.Load(), elapsed.Seconds()
	res.Rate = float64(res.Sent) / elapsed.Seconds()
	all := slices.Concat(lats...)
	slices.Sort(all)
	res.P50, res.P99, res.P999 = pct(all, 0.50), pct(all, 0.99), pct(all, 0.999)
	res.Latency = "round_trip"
	if c.Mode != "call" {
		res.Latency = "send_return"
		res.SendP50, res.SendP99 = res.P50, res.P99
	}
	if res.Sent > 0 {
		res.CPUPerMsg = float64(cpu.Nanoseconds()) / 1e3 / float64(res.Sent)
	}
	if v := r.firstErr.Load(); v != nil {
		res.FirstError = v.(string)
	}
	return nil
}

// worker sends one operation after the other until stop, Count
// operations are issued or the window stays shut; it appends each
// operation's latency to lats.
func (r *run) worker(cli *rpc.Client, lats *[]time.Duration) {
	c := r.c
	for {
		select {
		case <-r.stop:
			return
		default:
		}
		if c.Count > 0 && r.issued.Add(1) > uint64(c.Count) {
			return
		}
		if !r.counts.enter(r.weight, r.stop) {
			return
		}
		t0 := time.Now()
		payload := benchArgs(r.seq.Add(1), benchNow(), r.data)
		err := r.op(r.opCtx, cli, payload)
		for errors.Is(err, rpc.ErrBusy) {
			// The proxies' links are full: the bench outruns them.
			// Wait for room instead of counting a failure.
			time.Sleep(50 * time.Microsecond)
			err = r.op(r.opCtx, cli, payload)
		}
		if err != nil {
			r.failed.Add(1)
			r.firstErr.CompareAndSwap(nil, err.Error())
			if errors.Is(err, context.Canceled) {
				return
			}
			continue
		}
		*lats = append(*lats, time.Since(t0))
		r.sent.Add(1)
	}
}

// operation is one call, cast or fanout of the bench's mode. A call uses
// the run's ctx; a cast or fanout, opCtx.
func (r *run) operation(ctx context.Context) func(opCtx context.Context, cli *rpc.Client, payload json.RawMessage) error {
	target := rpc.Target{Topic: r.topic}
	mode, topic := r.c.Mode, r.topic
	return func(opCtx context.Context, cli *rpc.Client, payload json.RawMessage) error {
		switch mode {
		case "call":
			_, err := cli.Call(ctx, target, "echo", payload)
			return err
		case "cast":
			return cli.Cast(opCtx, target, "echo", payload)
		}
		return cli.Fanout(opCtx, topic, "echo", payload)
	}
}

// wait waits for the workers to finish (finished): it closes stop when
// the time is up or ctx is done, empties a stalled window every second,
// and shows the progress on stderr when it is a terminal.
func (r *run) wait(ctx context.Context, start time.Time, stop chan struct{}, finished <-chan struct{}, stderr io.Writer) {
	c := r.c
	progress := isTerminal(stderr)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var timeUp <-chan time.Time
	if c.Count == 0 {
		timer := time.NewTimer(c.Duration)
		defer timer.Stop()
		timeUp = timer.C
	}
	defer func() {
		if progress {
			fmt.Fprint(stderr, "\r\033[K")
		}
	}()
	for {
		select {
		case <-finished:
			return
		case <-timeUp:
			close(stop)
			timeUp = nil
		case <-ctx.Done():
			if timeUp != nil || c.Count > 0 {
				close(stop)
			}
			<-finished
			return
		case <-tick.C:
			if r.counts.unstall(c.Timeout) {
				r.res.Stalled++
			}
			if progress {
				el := time.Since(start).Seconds()
				fmt.Fprintf(stderr, "\r%s: %d sent, %d failed, %.0f/s   ", c.Mode, r.sent.Load(), r.failed.Load(), float64(r.sent.Load())/el)
			}
		}
	}
}

// settle counts what the bench's servers handled, once what is in flight
// has arrived (the counts settle, at most Timeout); with a target, lost
// is the failed operations and duplicated is not known.
func (r *run) settle(ctx context.Context) {
	res := &r.res
	if res.Servers == 0 {
		res.Lost, res.Duplicated = int64(res.Failed), -1
		return
	}
	want := int64(res.Sent)
	if r.c.Mode == "fanout" {
		want *= int64(res.Servers)
	}
	deadline := time.Now().Add(r.c.Timeout)
	for r.counts.distinct() < want && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	d := r.counts.distinct()
	if r.c.Mode != "call" {
		h := &r.counts.delivery
		res.Latency, res.P50, res.P99, res.P999 = "delivery", h.pct(0.50), h.pct(0.99), h.pct(0.999)
	}
	res.Lost = max(want-d, 0)
	res.Duplicated = r.counts.all.Load() - d
}

// print writes the result: as one JSON object, or as lines for people.
func (res *benchResult) print(w io.Writer, asJSON bool) {
	if asJSON {
		b, _ := json.Marshal(res)
		fmt.Fprintf(w, "%s\n", b)
		return
	}
	fmt.Fprintf(w, "%s: %d sent in %.2fs (%.0f/s), %d failed\n", res.Mode, res.Sent, res.Seconds, res.Rate, res.Failed)
	fmt.Fprintf(w, "%s latency: p50 %.0fµs  p99 %.0fµs  p99.9 %.0fµs\n", strings.ReplaceAll(res.Latency, "_", " "), res.P50, res.P99, res.P999)
	if res.Latency == "delivery" {
		fmt.Fprintf(w, "send returned: p50 %.0fµs  p99 %.0fµs\n", res.SendP50, res.SendP99)
	}
	fmt.Fprintf(w, "bench process CPU: %.2fµs per message\n", res.CPUPerMsg)
	if res.Duplicated >= 0 {
		fmt.Fprintf(w, "lost %d, duplicated %d\n", res.Lost, res.Duplicated)
	}
	if res.Stalled > 0 {
		fmt.Fprintf(w, "window stalled %d times: deliveries were lost\n", res.Stalled)
	}
	if res.FirstError != "" {
		fmt.Fprintf(w, "first error: %s\n", res.FirstError)
	}
}

func pct(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := min(int(float64(len(sorted))*p), len(sorted)-1)
	return float64(sorted[i].Microseconds())
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
