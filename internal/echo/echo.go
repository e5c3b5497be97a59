// Package echo is the server of "zmq-proxy echo-server": its echo, sleep
// and fail handlers, its --record file (a line per handler run, written
// before the run), and the JSON line it prints per message.
package echo

import (
	"context"
	"encoding/json"
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

	"github.com/zmq-proxy/zmq-proxy/rpc"
	"github.com/zmq-proxy/zmq-proxy/transport"
)

// maxSleep bounds echo-server's sleep method.
const maxSleep = time.Hour

// Handlers are echo-server's methods: echo replies with its arguments
// plus "server": name; sleep does so after args.ms milliseconds; fail
// raises a remote ValueError. With rec, each run is recorded first.
func Handlers(name string, rec *Recorder) map[string]rpc.Handler {
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

// Recorder is echo-server's --record: one line per handler run,
//
//	<server> <type> <method> <msg_id> <seq>
//
// (seq is the "seq" argument as JSON, "-" when there is none; a field
// that is empty or holds a space or a control character is written Go-
// quoted), appended before the handler runs. The file is opened with
// O_APPEND and each line is one write(2), with no buffer in the process:
// a line is in the file once the handler has started, so a kill -9 loses
// none, and lines of concurrent handlers never interleave.
type Recorder struct {
	f      *os.File
	server string
	log    *slog.Logger
	failed atomic.Bool // a write failed; said once
}

// OpenRecorder opens path for appending, for server's runs.
func OpenRecorder(path, server string, log *slog.Logger) (*Recorder, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	return &Recorder{f: f, server: server, log: log}, nil
}

func (r *Recorder) record(m *rpc.Message) {
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

// Close closes the file.
func (r *Recorder) Close() {
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

// LineWriter prints one JSON line per message, whole lines only.
type LineWriter struct {
	mu sync.Mutex
	W  io.Writer
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

// Message prints m as one line: an rpc server's Observe.
func (lw *LineWriter) Message(m *rpc.Message) {
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
	_, _ = lw.W.Write(append(b, '\n'))
}
