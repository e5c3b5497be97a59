// Package listing prints what the registry holds, for "zmq-proxy list":
// the proxies' records and then the rpc servers' targets, as tables or as
// JSON lines, once, or with Watch as they change.
package listing

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
	"unicode"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/zmq-proxy/zmq-proxy/registry"
)

// errListTimeout ends a listing that etcd did not answer in time;
// errTargetsTimeout one whose proxies were listed, but not the targets.
var (
	errListTimeout    = errors.New("list timed out")
	errTargetsTimeout = errors.New("targets not listed in time")
)

// Config says what to list and how.
type Config struct {
	Prefix  string        // the registry's key prefix
	Timeout time.Duration // the first listing must come within it
	Watch   bool          // print the changes after the listing, until ctx is done
	JSON    bool          // one JSON object per line instead of tables
	Logger  *slog.Logger
	// Where names the etcd endpoints in errors; NoAnswer is the error
	// when the proxies were not listed within Timeout.
	Where    string
	NoAnswer func() error
}

// List prints the table of the records at the first complete listing, and
// then, with Watch, each change until ctx is done. The listing must come
// within Timeout; the watch after it has no time limit.
func List(ctx context.Context, cli *clientv3.Client, stdout io.Writer, c Config) error {
	logger := c.Logger
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// synced (the proxies) and listed (the targets) are written on the
	// watchers' goroutines, under mu because the timer reads them: either
	// both listings are complete, or the timer ends them.
	var mu sync.Mutex
	synced, listed := false, false
	timer := time.AfterFunc(c.Timeout, func() {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case !synced:
			cancel(errListTimeout)
		case !listed:
			cancel(errTargetsTimeout)
		}
	})
	defer timer.Stop()

	p := &printer{w: stdout, json: c.JSON, watch: c.Watch}
	var werr error // the first failed write; it ends the listing
	var wmu sync.Mutex
	written := func(err error) {
		wmu.Lock()
		defer wmu.Unlock()
		if err != nil && werr == nil {
			werr = err
			cancel(err)
		}
	}
	// The servers' targets follow the proxies: their table after the
	// proxies' table, their changes as they come.
	var targets sync.WaitGroup
	followTargets := func() {
		tw := registry.NewTargetWatcher(cli, c.Prefix, logger)
		targets.Add(1)
		go func() {
			defer targets.Done()
			_ = tw.Run(ctx, func(ev registry.TargetEvent) {
				if listed && c.Watch {
					written(p.targetEvent(ev))
				}
			}, func() {
				mu.Lock()
				first := !listed && ctx.Err() == nil // a listing again after a compaction changes nothing
				listed = listed || first
				mu.Unlock()
				if !first {
					return
				}
				written(p.targets(tw.Targets()))
				if !c.Watch {
					cancel(nil)
				}
			})
		}()
	}
	w := registry.NewWatcher(cli, c.Prefix, logger)
	_ = w.Run(ctx, func(ev registry.Event) { // it returns when ctx is done, for one of the reasons below
		if synced && c.Watch { // events before are in the table
			written(p.event(ev))
		}
	}, func() {
		if synced { // a listing again, after a compaction: its changes were events
			return
		}
		mu.Lock()
		synced = ctx.Err() == nil
		mu.Unlock()
		if !synced {
			return
		}
		written(p.table(w.Records()))
		followTargets()
	})
	targets.Wait()
	switch cause := context.Cause(ctx); {
	case werr != nil:
		return fmt.Errorf("writing the list: %w", werr)
	case !synced && errors.Is(cause, errListTimeout):
		return c.NoAnswer()
	case errors.Is(cause, errTargetsTimeout):
		return fmt.Errorf("the proxies are listed, but etcd at %s gave no listing of the servers' targets (%s) within %s",
			c.Where, registry.TargetPrefix(c.Prefix), c.Timeout)
	case !synced:
		return fmt.Errorf("interrupted: %w", cause)
	}
	return nil // listed; with --watch, until ctx was done
}

// printer writes records and events as text or JSON, one line each. The
// proxies' and the targets' watchers share it.
type printer struct {
	mu    sync.Mutex
	w     io.Writer
	json  bool // one JSON object per line
	watch bool // JSON: the first records as put events
}

// columns of the table.
const columns = "ID\tKIND\tHOST\tFRONTEND\tBACKEND\tPUBLISHER\tSTARTED"

func (p *printer) table(recs []registry.Record) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.json {
		for _, r := range recs {
			var v any = r
			if p.watch {
				v = JSONEvent{Time: now(), Event: registry.EventPut.String(), Record: r}
			}
			if err := p.jsonLine(v); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(p.w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, columns)
	for _, r := range recs {
		fmt.Fprintln(tw, strings.Join([]string{
			field(r.ID), field(r.Kind), field(r.Host),
			field(r.Frontend), field(r.Backend), field(r.Publisher), FormatStarted(r.Started),
		}, "\t"))
	}
	return tw.Flush()
}

// JSONEvent is one change, with --watch --json.
type JSONEvent struct {
	Time   string          `json:"time"`  // when list saw it, RFC 3339, UTC
	Event  string          `json:"event"` // "put" or "delete"
	Record registry.Record `json:"record"`
}

// now is when a change was seen, as list prints it: UTC, RFC 3339 with
// milliseconds.
func now() string { return time.Now().UTC().Format(TimeLayout) }

// TimeLayout is RFC 3339 with milliseconds, always three digits.
const TimeLayout = "2006-01-02T15:04:05.000Z07:00"

// targetName is a target as the client commands take it: "topic" or
// "topic.server" (registered as "topic/server").
func targetName(target string) string { return strings.Replace(target, "/", ".", 1) }

func (p *printer) event(ev registry.Event) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.json {
		return p.jsonLine(JSONEvent{Time: now(), Event: ev.Type.String(), Record: ev.Record})
	}
	var line string
	if ev.Type == registry.EventDelete {
		line = now() + " - " + field(ev.ID)
	} else {
		r := ev.Record
		line = strings.Join([]string{now(), "+", field(ev.ID), field(r.Kind),
			field(r.Frontend), field(r.Backend), field(r.Publisher)}, " ")
	}
	_, err := fmt.Fprintln(p.w, line)
	return err
}

// targetColumns of the targets' table.
const targetColumns = "TARGET\tIDENTITY\tHOST\tSTARTED"

// targets writes the servers' targets after the proxies: nothing when no
// server is registered; with --json, one {"target": ...} object each.
func (p *printer) targets(ts []registry.Target) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(ts) == 0 {
		return nil
	}
	if p.json {
		for _, t := range ts {
			t.Target = targetName(t.Target)
			var v any = t
			if p.watch {
				v = JSONTargetEvent{Time: now(), Event: registry.EventPut.String(), Target: t}
			}
			if err := p.jsonLine(v); err != nil {
				return err
			}
		}
		return nil
	}
	slices.SortFunc(ts, func(a, b registry.Target) int {
		return cmp.Or(cmp.Compare(a.Target, b.Target), cmp.Compare(a.Identity, b.Identity))
	})
	tw := tabwriter.NewWriter(p.w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, targetColumns)
	for _, t := range ts {
		fmt.Fprintln(tw, strings.Join([]string{field(targetName(t.Target)), field(t.Identity), field(t.Host), FormatStarted(t.Started)}, "\t"))
	}
	return tw.Flush()
}

// JSONTargetEvent is one change of the targets, with --watch --json.
type JSONTargetEvent struct {
	Time   string          `json:"time"`
	Event  string          `json:"event"`
	Target registry.Target `json:"target"`
}

// targetEvent writes "TIME + target TARGET IDENTITY" or "TIME - target
// TARGET IDENTITY".
func (p *printer) targetEvent(ev registry.TargetEvent) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := ev.Target
	t.Target = targetName(t.Target)
	if p.json {
		return p.jsonLine(JSONTargetEvent{Time: now(), Event: ev.Type.String(), Target: t})
	}
	sign := "+"
	if ev.Type == registry.EventDelete {
		sign = "-"
	}
	_, err := fmt.Fprintln(p.w, now(), sign, "target", field(t.Target), field(t.Identity))
	return err
}

func (p *printer) jsonLine(v any) error {
	enc := json.NewEncoder(p.w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// field is one column of a text line: "-" when empty, and quoted when it
// holds a blank or a control character, so that a record, which anyone with
// access to etcd may write, cannot break the columns or the terminal.
func field(s string) string {
	if s == "" {
		return "-"
	}
	if strings.ContainsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || !unicode.IsPrint(r) }) {
		return strconv.Quote(s)
	}
	return s
}

// FormatStarted is a start time as the STARTED columns show it.
func FormatStarted(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
