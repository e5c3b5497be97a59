//go:build !noembedetcd

package etcdserver

import (
	"context"
	"log/slog"
	"slices"
	"sort"
	"sync/atomic"

	"go.uber.org/zap/zapcore"
)

// slogCore is a zapcore.Core that hands etcd's zap entries of level error
// and above to a slog.Logger, so that the embedded etcd's complaints appear
// in the proxy's log and its chatter (info: every start, election,
// snapshot) does not.
//
// While etcd starts and while it closes, its errors go to slog's debug
// level: a failed start is returned by Start (logging it too would report
// it twice), and a clean Close makes every listener goroutine complain at
// error level that its listener closed.
type slogCore struct {
	lg      *slog.Logger
	serving *atomic.Bool    // shared by the cores made by With
	fields  []zapcore.Field // from With
}

func newSlogCore(lg *slog.Logger) *slogCore {
	return &slogCore{lg: lg.With("component", "etcd"), serving: new(atomic.Bool)}
}

// setServing turns the error level on (after start) or off (before close).
func (c *slogCore) setServing(on bool) { c.serving.Store(on) }

// Enabled reports whether level is logged: error and above.
func (c *slogCore) Enabled(level zapcore.Level) bool { return level >= zapcore.ErrorLevel }

// With returns a core that adds fields to every entry.
func (c *slogCore) With(fields []zapcore.Field) zapcore.Core {
	return &slogCore{lg: c.lg, serving: c.serving, fields: append(slices.Clip(c.fields), fields...)}
}

// Check adds c to ce if the entry's level is enabled.
func (c *slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

// Write logs the entry at slog's error level (debug while not serving), under the constant message
// "embedded etcd", with etcd's message under "detail" and its fields as
// attributes, sorted by key.
func (c *slogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	for _, f := range fields {
		f.AddTo(enc)
	}
	keys := make([]string, 0, len(enc.Fields))
	for k := range enc.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	attrs := make([]slog.Attr, 0, len(keys)+2)
	attrs = append(attrs, slog.String("detail", e.Message))
	if e.LoggerName != "" {
		attrs = append(attrs, slog.String("logger", e.LoggerName))
	}
	for _, k := range keys {
		attrs = append(attrs, slog.Any(k, enc.Fields[k]))
	}
	level := slog.LevelDebug
	if c.serving.Load() {
		level = slog.LevelError
	}
	c.lg.LogAttrs(context.Background(), level, "embedded etcd", attrs...)
	return nil
}

// Sync does nothing: slog has no buffer to flush.
func (c *slogCore) Sync() error { return nil }
