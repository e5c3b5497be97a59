package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/zmq-proxy/zmq-proxy/registry"
	redismm "github.com/zmq-proxy/zmq-proxy/registry/redis"
	"github.com/zmq-proxy/zmq-proxy/rpc"
	"github.com/zmq-proxy/zmq-proxy/transport"
)

// The client commands use the rpc package as a service would. Exit
// status, as for every command (exitStatusText): 0 done; 1 failed while
// running (etcd or Redis unreachable, no proxy, no server, timeout); 2 bad
// flag, argument or configuration; 3 the server raised a failure (call).

// clientSetup resolves the configuration of a client command, starts its
// logger and its etcd client. done releases them.
type clientSetup struct {
	c      *config
	log    *slog.Logger
	etcd   *clientv3.Client    // the registry, or
	redis  *redismm.Matchmaker // oslo.messaging's Redis matchmaker (-u zmq+redis://)
	closer []func() error
}

func (s *clientSetup) done() {
	for i := len(s.closer) - 1; i >= 0; i-- {
		_ = s.closer[i]()
	}
}

// setupClient returns the exit code to stop with (0 for -h) when it
// cannot go on, after saying why on stderr.
func setupClient(ctx context.Context, cmd command, name string, args []string, stdout, stderr io.Writer, nargs [2]int, check func(*config) error) (*clientSetup, int) {
	fail := func(code int, err error) (*clientSetup, int) {
		fmt.Fprintf(stderr, "%s %s: %v\n", progName, name, err)
		return nil, code
	}
	c, err := resolve(cmd, args)
	if errors.Is(err, flag.ErrHelp) {
		printClientUsage(stdout, name)
		return nil, 0
	}
	if err != nil {
		return fail(2, err)
	}
	if n := len(c.Args); n < nargs[0] || n > nargs[1] {
		return fail(2, fmt.Errorf("%d arguments, want %s (see %s %s -h)", n, clientUsage[name].args, progName, name))
	}
	if check != nil {
		if err := check(c); err != nil {
			return fail(2, err)
		}
	}
	s := &clientSetup{c: c}
	var closeLog func() error
	if s.log, closeLog, err = newLogger(c, stderr); err != nil {
		return fail(2, err)
	}
	s.closer = append(s.closer, closeLog)
	c.log(s.log)
	if c.Registry.Mode == registryRedis {
		s.redis = redismm.New(redismm.Config{Addr: c.Registry.RedisAddr, Password: c.Registry.RedisPassword,
			DB: c.Registry.RedisDB, Timeout: c.ListTimeout, Logger: s.log})
		s.closer = append(s.closer, s.redis.Close)
		pctx, cancel := context.WithTimeout(ctx, c.registryWait())
		defer cancel()
		if err := s.redis.Ping(pctx); err != nil {
			s.done()
			return fail(1, fmt.Errorf("redis at %s: %w", c.Registry.RedisAddr, err))
		}
		return s, -1
	}
	cfg, err := c.clientConfig()
	if err != nil {
		s.done()
		return fail(2, err)
	}
	if s.etcd, err = registry.NewClient(cfg); err != nil {
		s.done()
		code, err := c.clientError(err)
		return fail(code, err)
	}
	s.closer = append(s.closer, s.etcd.Close)
	if err := c.probe(ctx, s.etcd, time.Now().Add(c.registryWait())); err != nil {
		s.done()
		return fail(1, err)
	}
	return s, -1
}

func (s *clientSetup) clientConfig() rpc.ClientConfig {
	return rpc.ClientConfig{Etcd: s.etcd, Redis: s.redis, Prefix: s.c.EtcdPrefix, Host: s.c.Name, Acks: s.c.Acks,
		AckTimeout: s.c.AckTimeout, Retries: s.c.Retries, Logger: s.log}
}

// jsonArg parses an optional JSON argument; "" = {}. JSON_ARGS, a
// method's arguments by name, must be an object.
func jsonArg(what, s string) (any, error) {
	if s == "" {
		return map[string]any{}, nil
	}
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return nil, fmt.Errorf("%s %q is not JSON: %w", what, s, err)
	}
	if _, ok := v.(map[string]any); !ok && what == "JSON_ARGS" {
		return nil, fmt.Errorf(`%s %s is not a JSON object: a method's arguments go by name, as in '{"x": 1}'`, what, s)
	}
	return v, nil
}

// runSend is call, cast, fanout and notify.
func runSend(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	var payload any
	s, code := setupClient(ctx, cmdRPC, name, args, stdout, stderr, [2]int{2, 3}, func(c *config) (err error) {
		if len(c.Args) == 3 {
			what := "JSON_ARGS"
			if name == "notify" {
				what = "JSON_PAYLOAD"
			}
			payload, err = jsonArg(what, c.Args[2])
		}
		return err
	})
	if s == nil {
		return code
	}
	defer s.done()
	fail := func(code int, err error) int {
		fmt.Fprintf(stderr, "%s %s: %v\n", progName, name, err)
		return code
	}
	first, second := s.c.Args[0], s.c.Args[1]
	// The arguments are checked before anything is sent.
	var target rpc.Target
	switch name {
	case "call", "cast":
		t, err := rpc.ParseTarget(first)
		if err != nil {
			return fail(2, fmt.Errorf("%q is not TOPIC[.SERVER]: %w", first, err))
		}
		target = t
	case "notify":
		i := strings.LastIndex(first, ".")
		if i <= 0 || i == len(first)-1 {
			return fail(2, fmt.Errorf("%q is not TOPIC.PRIORITY", first))
		}
	}
	// Finding the proxies is bounded as the registry is, the message by
	// --timeout.
	nctx, cancel := context.WithTimeout(ctx, s.c.registryWait())
	cli, err := rpc.NewClient(nctx, s.clientConfig())
	cancel()
	if err != nil {
		return fail(1, err)
	}
	defer cli.Close()
	ctx, cancel = context.WithTimeout(ctx, s.c.ListTimeout)
	defer cancel()
	switch name {
	case "call":
		reply, err := cli.Call(ctx, target, second, payload)
		var re *rpc.RemoteError
		if errors.As(err, &re) {
			fmt.Fprintf(stderr, "%s %s: remote %s: %s\n", progName, name, re.Class, re.Message)
			return 3
		}
		if err != nil {
			return fail(1, s.c.rpcError(err))
		}
		fmt.Fprintf(stdout, "%s\n", reply)
	case "cast":
		if err := cli.Cast(ctx, target, second, payload); err != nil {
			return fail(1, s.c.rpcError(err))
		}
	case "fanout":
		if err := cli.Fanout(ctx, first, second, payload); err != nil {
			return fail(1, s.c.rpcError(err))
		}
	case "notify":
		i := strings.LastIndex(first, ".")
		if err := cli.Notify(ctx, first[:i], first[i+1:], second, payload); err != nil {
			return fail(1, s.c.rpcError(err))
		}
	}
	return 0
}

// runEchoServer is "zmq-proxy echo-server TOPIC [SERVER]": it serves echo
// (its args plus the server's name), sleep (echo, after args.ms) and fail
// (a remote ValueError), prints every message it gets as one JSON line,
// and with --record appends a line per handler run to a file, until ctx
// ends. It ACKs CALLs and CASTs only with --acks, as oslo.messaging's
// servers do only with rpc_use_acks.
func runEchoServer(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	s, code := setupClient(ctx, cmdEcho, "echo-server", args, stdout, stderr, [2]int{1, 2}, nil)
	if s == nil {
		return code
	}
	defer s.done()
	topic, server := s.c.Args[0], ""
	if len(s.c.Args) == 2 {
		server = s.c.Args[1]
	}
	name := server
	if name == "" {
		name = s.c.Name
	}
	var rec *recorder
	if s.c.Record != "" {
		var err error
		if rec, err = openRecorder(s.c.Record, name, s.log); err != nil {
			fmt.Fprintf(stderr, "%s echo-server: --record: %v\n", progName, err)
			return 2
		}
		defer rec.close()
	}
	out := &lineWriter{w: stdout}
	cfg := rpc.ServerConfig{Etcd: s.etcd, Redis: s.redis, Prefix: s.c.EtcdPrefix, Host: s.c.Name, Topic: topic, Server: server, TargetTTL: s.c.TargetExpire,
		Logger: s.log, Handlers: echoHandlers(name, rec), Observe: out.message, Acks: s.c.Acks,
		Notify: func(context.Context, *rpc.Message) {}}
	cfg.Node = s.c.Node // the node whose local publisher proxy it subscribes on
	sctx, cancel := context.WithTimeout(ctx, s.c.registryWait())
	srv, err := rpc.NewServer(sctx, cfg)
	cancel()
	if err != nil {
		fmt.Fprintf(stderr, "%s echo-server: %v\n", progName, err)
		return 1
	}
	s.log.Info("echo server started", "topic", topic, "server", server, "identity", srv.Identity(), "acks", s.c.Acks, "record", s.c.Record)
	<-ctx.Done()
	srv.Close()
	s.log.Info("echo server stopped", "handled", srv.Stats().Handled.Load(), "duplicates", srv.Stats().Duplicates.Load(), "acks", srv.Stats().Acks.Load())
	return 0
}

// maxSleep bounds echo-server's sleep method.
const maxSleep = time.Hour

func echoHandlers(name string, rec *recorder) map[string]rpc.Handler {
	echo := func(m *rpc.Message) (map[string]any, error) {
		var args map[string]any
		if err := json.Unmarshal(m.Args, &args); err != nil || args == nil {
			return nil, &rpc.RemoteError{Class: "TypeError", Module: "builtins", Message: m.Method + " takes an object"}
		}
		args["server"] = name
		return args, nil
	}
	h := map[string]rpc.Handler{
		"echo": func(_ context.Context, m *rpc.Message) (any, error) { return echo(m) },
		// sleep replies as echo does, after args.ms milliseconds; a server
		// that stops cuts it short (its context ends) with a failure.
		"sleep": func(ctx context.Context, m *rpc.Message) (any, error) {
			reply, err := echo(m)
			if err != nil {
				return nil, err
			}
			ms, ok := reply["ms"].(float64)
			d := time.Duration(ms * float64(time.Millisecond))
			if !ok || ms != math.Trunc(ms) || d < 0 || d > maxSleep {
				return nil, &rpc.RemoteError{Class: "TypeError", Module: "builtins",
					Message: fmt.Sprintf("sleep takes {\"ms\": N}, N a whole number of milliseconds from 0 to %d", maxSleep.Milliseconds())}
			}
			t := time.NewTimer(d)
			defer t.Stop()
			select {
			case <-t.C:
				return reply, nil
			case <-ctx.Done():
				return nil, fmt.Errorf("sleep of %v cut short: %w", d, ctx.Err())
			}
		},
		"fail": func(context.Context, *rpc.Message) (any, error) {
			return nil, &rpc.RemoteError{Class: "ValueError", Module: "builtins", Message: "echo-server was asked to fail"}
		},
	}
	if rec != nil {
		for method, fn := range h {
			h[method] = func(ctx context.Context, m *rpc.Message) (any, error) {
				rec.record(m)
				return fn(ctx, m)
			}
		}
	}
	return h
}

// recorder is echo-server's --record: one line per handler run,
//
//	<server> <type> <method> <msg_id> <seq>
//
// (seq is the "seq" argument as JSON, "-" when there is none; a field
// that is empty or holds a space or a control character is written Go-
// quoted), appended before the handler runs. The file is opened with
// O_APPEND and each line is one write(2), with no buffer in the process:
// a line is in the file once the handler has started, so a kill -9 loses
// none, and lines of concurrent handlers never interleave.
type recorder struct {
	f      *os.File
	server string
	log    *slog.Logger
	failed atomic.Bool // a write failed; said once
}

func openRecorder(path, server string, log *slog.Logger) (*recorder, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	return &recorder{f: f, server: server, log: log}, nil
}

func (r *recorder) record(m *rpc.Message) {
	seq := "-"
	var a struct {
		Seq json.RawMessage `json:"seq"`
	}
	if json.Unmarshal(m.Args, &a) == nil && len(a.Seq) > 0 {
		seq = string(a.Seq)
	}
	line := strings.Join([]string{recordField(r.server), recordField(transport.MsgType(m.Type).String()),
		recordField(m.Method), recordField(m.MessageID), recordField(seq)}, " ") + "\n"
	if _, err := r.f.WriteString(line); err != nil && !r.failed.Swap(true) {
		r.log.Error("record file write failed; runs from now on may be missing from it", "file", r.f.Name(), "err", err)
	}
}

func (r *recorder) close() {
	if err := r.f.Close(); err != nil {
		r.log.Error("record file close failed", "file", r.f.Name(), "err", err)
	}
}

// recordField keeps a record line's fields apart: a field that is empty or
// holds a space or a control character is quoted.
func recordField(s string) string {
	if s == "" || strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) || r == '"' }) >= 0 {
		return strconv.Quote(s)
	}
	return s
}

// lineWriter prints one JSON line per message, whole lines only.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

// echoLine is what echo-server prints for each message.
type echoLine struct {
	Type       string          `json:"type"`
	Method     string          `json:"method,omitempty"`
	MessageID  string          `json:"msg_id"`
	RoutingKey string          `json:"routing_key"`
	ReplyID    string          `json:"reply_id,omitempty"`
	Args       json.RawMessage `json:"args,omitempty"`
	EventType  string          `json:"event_type,omitempty"`
	Priority   string          `json:"priority,omitempty"`
	Payload    json.RawMessage `json:"payload,omitempty"`
}

func (lw *lineWriter) message(m *rpc.Message) {
	l := echoLine{Type: transport.MsgType(m.Type).String(), Method: m.Method, MessageID: m.MessageID,
		RoutingKey: m.RoutingKey, ReplyID: m.ReplyID, Args: m.Args}
	if n := m.Notification; n != nil {
		l.EventType, l.Priority, l.Payload = n.EventType, n.Priority, n.Payload
	}
	b, err := json.Marshal(l)
	if err != nil {
		return
	}
	lw.mu.Lock()
	defer lw.mu.Unlock()
	_, _ = lw.w.Write(append(b, '\n'))
}

// clientUsage is each client command's synopsis and description.
var clientUsage = map[string]struct{ args, text string }{
	"call": {"TOPIC[.SERVER] METHOD [JSON_ARGS]",
		"Call METHOD on one server of TOPIC (or the one named SERVER) and print the reply as JSON. " +
			"Exit status: 0 with the reply; 1 when it failed: no proxy, no server, no reply within --timeout, " +
			"etcd or Redis unreachable; 2 for a bad flag or argument; 3 when the server raised a failure " +
			"(its class and message on stderr)."},
	"cast": {"TOPIC[.SERVER] METHOD [JSON_ARGS]",
		"Send METHOD to one server of TOPIC, without a reply; with --acks, wait until a server acknowledged it."},
	"fanout": {"TOPIC METHOD [JSON_ARGS]", "Send METHOD to every server of TOPIC."},
	"notify": {"TOPIC.PRIORITY EVENT_TYPE [JSON_PAYLOAD]",
		"Send a notification, as oslo.messaging's notifier does, to the listeners of TOPIC.PRIORITY."},
	"echo-server": {"TOPIC [SERVER]",
		"Serve TOPIC (as SERVER): echo returns its arguments and the server's name, sleep does the same " +
			"after {\"ms\": N} milliseconds, fail raises a ValueError. With --acks it ACKs each CALL and CAST on receipt " +
			"(oslo.messaging's rpc_use_acks); with --record FILE it appends one line per handler run to FILE. " +
			"Every message received (call, cast, fanout, notify) is printed on stdout as one JSON line " +
			"with its type, method, msg_id, routing_key and arguments (or event_type, priority and payload). " +
			"Runs until SIGINT or SIGTERM."},
	"bench": {"call|cast|fanout",
		"Measure the running deployment: clients send for --duration (or --count messages) to echo servers " +
			"the bench starts (or to --target's), and the bench prints the rate, the latency percentiles, " +
			"and how many messages were lost or handled twice. With --json, the last line is one JSON object. " +
			"Latency (p50_us, p99_us, p999_us; \"latency\" names it): for call, the round trip from Call to its reply; " +
			"for cast and fanout to the bench's servers, delivery: from the send to the handler's start at a server, " +
			"per message and server (how long the send took to return is send_p50_us, send_p99_us); " +
			"with --target, how long the send took to return. rate is messages sent per second; " +
			"cpu_us_per_msg is the bench process's CPU (clients and servers, not the proxies) per message sent."},
}

func printClientUsage(w io.Writer, name string) {
	u := clientUsage[name]
	fmt.Fprintf(w, "Usage: %s %s %s [options]\n\n", progName, name, u.args)
	fmt.Fprint(w, wrap(u.text, "", 78))
	cmd := cmdRPC
	switch name {
	case "bench":
		cmd = cmdBench
	case "echo-server":
		cmd = cmdEcho
	}
	fmt.Fprintf(w, "\nOptions:\n")
	printOptions(w, cmd)
	fmt.Fprintf(w, "\n%s", wrap("With no URL, the command uses the etcd on --etcd-addr, the one a proxy "+
		"started without a URL runs. The configuration file is the proxy's; the client commands read its "+
		"url, etcd_* and rpc_* keys.", "", 78))
}

// rpcError is err, from the rpc package, with what to do about it.
func (c *config) rpcError(err error) error {
	switch {
	case errors.Is(err, rpc.ErrTimeout):
		return fmt.Errorf("%w, within %s (--timeout): a busy server or a slow network needs a longer --timeout", err, c.ListTimeout)
	case errors.Is(err, rpc.ErrNoServer):
		return fmt.Errorf("%w: start a server of the topic; %s list shows the registered ones", err, progName)
	case errors.Is(err, rpc.ErrNoProxy):
		return fmt.Errorf("%w: start a central zmq-proxy that registers where this command looks (%s)", err, c.where())
	}
	return err
}

// where names the registry a client command reads.
func (c *config) where() string {
	if c.Registry.Mode == registryRedis {
		return "Redis at " + c.Registry.RedisAddr
	}
	return "etcd at " + strings.Join(c.endpoints(), ",")
}
