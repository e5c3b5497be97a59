package main

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
	// Latency says what P50, P99 and P999 measure (benchmeasure.go):
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

// runBench is "zmq-proxy bench call|cast|fanout".
func runBench(ctx context.Context, _ string, args []string, stdout, stderr io.Writer) int {
	s, code := setupClient(ctx, cmdBench, "bench", args, stdout, stderr, [2]int{1, 1}, func(c *config) error {
		if m := c.Args[0]; m != "call" && m != "cast" && m != "fanout" {
			return fmt.Errorf("%q is not call, cast or fanout", m)
		}
		return nil
	})
	if s == nil {
		return code
	}
	defer s.done()
	fail := func(err error) int {
		fmt.Fprintf(stderr, "%s bench: %v\n", progName, err)
		return 1
	}
	c := s.c
	if !c.Debug { // the bench's own servers and clients: warnings only
		s.log = slog.New(levelHandler{slog.LevelWarn, s.log.Handler()})
	}
	mode := c.Args[0]
	res := benchResult{Mode: mode, Clients: c.BenchClients, Outstanding: c.BenchOutstanding, Size: c.BenchSize, Acks: c.Acks}
	// Cast and fanout without acks would outrun the servers and lose at
	// the proxy's high-water mark what they cannot take: the bench's own
	// servers tell it what they handled, and each client keeps at most
	// --window deliveries in flight (loadgen's flow control).
	weight := 1 // deliveries per message
	if mode == "fanout" {
		weight = c.BenchServers
	}
	var window chan struct{}
	if mode != "call" && c.BenchTarget == "" && c.BenchWindow > 0 {
		window = make(chan struct{}, c.BenchWindow*c.BenchClients*weight)
		res.Window = c.BenchWindow
	}
	topic := c.BenchTarget
	// The servers' handlers count in the tally of the moment: the probes'
	// one, then the run's.
	var tallyNow atomic.Pointer[tally]
	tallyNow.Store(newTally(c.BenchServers, window))
	if topic == "" {
		topic = "bench-" + uuid.NewString()[:8]
		res.Servers = c.BenchServers
		for i := range c.BenchServers {
			name := fmt.Sprintf("b%d", i)
			sctx, cancel := context.WithTimeout(ctx, c.ListTimeout)
			srv, err := rpc.NewServer(sctx, rpc.ServerConfig{Etcd: s.etcd, Redis: s.redis, Prefix: c.EtcdPrefix, Host: c.Name,
				Topic: topic, Server: name, Logger: s.log, Workers: 4 * c.BenchOutstanding,
				// As oslo.messaging's servers: ACKs only with rpc_use_acks.
				Acks: c.Acks,
				Handlers: map[string]rpc.Handler{
					"echo": func(_ context.Context, m *rpc.Message) (any, error) {
						tallyNow.Load().add(i, m)
						return nil, nil
					},
					"probe": func(context.Context, *rpc.Message) (any, error) { return nil, nil },
				},
				Observe: func(m *rpc.Message) {
					if m.Method == "probe" {
						tallyNow.Load().add(i, &rpc.Message{MessageID: "probe"})
					}
				}})
			cancel()
			if err != nil {
				return fail(err)
			}
			defer srv.Close()
		}
	}
	clients := make([]*rpc.Client, c.BenchClients)
	for i := range clients {
		cctx, cancel := context.WithTimeout(ctx, c.ListTimeout)
		cfg := s.clientConfig()
		cfg.CallTimeout = c.ListTimeout
		cli, err := rpc.NewClient(cctx, cfg)
		cancel()
		if err != nil {
			return fail(err)
		}
		defer cli.Close()
		clients[i] = cli
	}
	if mode == "fanout" && res.Servers > 0 {
		// A subscription reaches the publishers after the connection: probe
		// until every server has one, then count from there.
		deadline := time.Now().Add(c.ListTimeout)
		for tallyNow.Load().distinct() < int64(res.Servers) {
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fail(fmt.Errorf("not every server got a fanout probe within %s", c.ListTimeout))
			}
			_ = clients[0].Fanout(ctx, topic, "probe", nil)
			time.Sleep(20 * time.Millisecond)
		}
		tallyNow.Store(newTally(c.BenchServers, window))
	}
	counts := tallyNow.Load()

	// Each message's arguments carry its number (seq) before --size bytes
	// of data, for the tally.
	data := strings.Repeat("x", c.BenchSize)
	var seq atomic.Uint64
	target := rpc.Target{Topic: topic}
	// A call is bounded by the clients' CallTimeout (--timeout). A cast or
	// fanout waits only when no proxy is connected: it is given up
	// --timeout after the run ends (a context per operation, with its
	// timer, was a tenth of a cast's cost).
	stop := make(chan struct{})
	opCtx, cancelOps := context.WithCancel(ctx)
	defer cancelOps()
	go func() {
		select {
		case <-stop:
			t := time.AfterFunc(c.ListTimeout, cancelOps)
			<-opCtx.Done()
			t.Stop()
		case <-opCtx.Done():
		}
	}()
	op := func(cli *rpc.Client, payload json.RawMessage) error {
		switch mode {
		case "call":
			_, err := cli.Call(ctx, target, "echo", payload)
			return err
		case "cast":
			return cli.Cast(opCtx, target, "echo", payload)
		}
		return cli.Fanout(opCtx, topic, "echo", payload)
	}

	var sent, failed, issued atomic.Uint64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	lats := make([][]time.Duration, c.BenchClients*c.BenchOutstanding)
	stopProfile, err := startCPUProfile(c.BenchCPUProfile)
	if err != nil {
		return fail(err)
	}
	cpu0 := processCPU()
	start := time.Now()
	for i := range lats {
		cli := clients[i%len(clients)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if c.BenchCount > 0 && issued.Add(1) > uint64(c.BenchCount) {
					return
				}
				if !counts.enter(weight, stop) {
					return
				}
				t0 := time.Now()
				payload := benchArgs(seq.Add(1), benchNow(), data)
				err := op(cli, payload)
				for errors.Is(err, rpc.ErrBusy) {
					// The proxies' links are full: the bench outruns them.
					// Wait for room instead of counting a failure.
					time.Sleep(50 * time.Microsecond)
					err = op(cli, payload)
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					if errors.Is(err, context.Canceled) {
						return
					}
					continue
				}
				lats[i] = append(lats[i], time.Since(t0))
				sent.Add(1)
			}
		}()
	}
	progress := isTerminal(stderr)
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var timeUp <-chan time.Time
	if c.BenchCount == 0 {
		timer := time.NewTimer(c.BenchDuration)
		defer timer.Stop()
		timeUp = timer.C
	}
wait:
	for {
		select {
		case <-finished:
			break wait
		case <-timeUp:
			close(stop)
			timeUp = nil
		case <-ctx.Done():
			if timeUp != nil || c.BenchCount > 0 {
				close(stop)
			}
			<-finished
			break wait
		case <-tick.C:
			if counts.unstall(c.ListTimeout) {
				res.Stalled++
			}
			if progress {
				el := time.Since(start).Seconds()
				fmt.Fprintf(stderr, "\r%s: %d sent, %d failed, %.0f/s   ", mode, sent.Load(), failed.Load(), float64(sent.Load())/el)
			}
		}
	}
	elapsed := time.Since(start)
	cpu := processCPU() - cpu0
	stopProfile()
	if progress {
		fmt.Fprint(stderr, "\r\033[K")
	}

	res.Sent, res.Failed, res.Seconds = sent.Load(), failed.Load(), elapsed.Seconds()
	res.Rate = float64(res.Sent) / elapsed.Seconds()
	all := slices.Concat(lats...)
	slices.Sort(all)
	res.P50, res.P99, res.P999 = pct(all, 0.50), pct(all, 0.99), pct(all, 0.999)
	res.Latency = "round_trip"
	if mode != "call" {
		res.Latency = "send_return"
		res.SendP50, res.SendP99 = res.P50, res.P99
	}
	if res.Sent > 0 {
		res.CPUPerMsg = float64(cpu.Nanoseconds()) / 1e3 / float64(res.Sent)
	}
	if v := firstErr.Load(); v != nil {
		res.FirstError = v.(string)
	}
	if res.Servers > 0 {
		want := int64(res.Sent)
		if mode == "fanout" {
			want *= int64(res.Servers)
		}
		// What is in flight arrives within a moment: wait until the counts
		// settle, at most --timeout.
		deadline := time.Now().Add(c.ListTimeout)
		for counts.distinct() < want && time.Now().Before(deadline) && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond)
		}
		d := counts.distinct()
		if mode != "call" {
			h := &counts.delivery
			res.Latency, res.P50, res.P99, res.P999 = "delivery", h.pct(0.50), h.pct(0.99), h.pct(0.999)
		}
		res.Lost = max(want-d, 0)
		res.Duplicated = counts.all.Load() - d
	} else {
		res.Lost, res.Duplicated = int64(res.Failed), -1
	}
	if c.JSON {
		b, _ := json.Marshal(res)
		fmt.Fprintf(stdout, "%s\n", b)
	} else {
		fmt.Fprintf(stdout, "%s: %d sent in %.2fs (%.0f/s), %d failed\n", mode, res.Sent, res.Seconds, res.Rate, res.Failed)
		fmt.Fprintf(stdout, "%s latency: p50 %.0fµs  p99 %.0fµs  p99.9 %.0fµs\n", strings.ReplaceAll(res.Latency, "_", " "), res.P50, res.P99, res.P999)
		if res.Latency == "delivery" {
			fmt.Fprintf(stdout, "send returned: p50 %.0fµs  p99 %.0fµs\n", res.SendP50, res.SendP99)
		}
		fmt.Fprintf(stdout, "bench process CPU: %.2fµs per message\n", res.CPUPerMsg)
		if res.Duplicated >= 0 {
			fmt.Fprintf(stdout, "lost %d, duplicated %d\n", res.Lost, res.Duplicated)
		}
		if res.Stalled > 0 {
			fmt.Fprintf(stdout, "window stalled %d times: deliveries were lost\n", res.Stalled)
		}
		if res.FirstError != "" {
			fmt.Fprintf(stdout, "first error: %s\n", res.FirstError)
		}
	}
	return 0
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

// levelHandler drops records below its level.
type levelHandler struct {
	level slog.Level
	slog.Handler
}

func (h levelHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.level && h.Handler.Enabled(ctx, l)
}

func (h levelHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return levelHandler{h.level, h.Handler.WithAttrs(as)}
}

func (h levelHandler) WithGroup(name string) slog.Handler {
	return levelHandler{h.level, h.Handler.WithGroup(name)}
}
