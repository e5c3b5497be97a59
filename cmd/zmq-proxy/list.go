package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
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

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/status"

	"github.com/zmq-proxy/zmq-proxy/registry"
)

// errListTimeout ends a listing that etcd did not answer in time;
// errTargetsTimeout one whose proxies were listed, but not the targets.
var (
	errListTimeout    = errors.New("list timed out")
	errTargetsTimeout = errors.New("targets not listed in time")
)

// runList is "zmq-proxy list": it prints the proxies registered in etcd and
// returns, or with --watch prints the changes too until ctx is done. It
// returns the exit code: 0 (after -h, or when ctx ends a watch), 1 when
// etcd cannot be reached or read, 2 on a bad flag or configuration.
func runList(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fail := func(code int, err error) int {
		fmt.Fprintf(stderr, "%s list: %v\n", progName, err)
		return code
	}
	c, err := resolve(cmdList, args)
	if errors.Is(err, flag.ErrHelp) {
		printUsage(stdout, cmdList)
		return 0
	}
	if err != nil {
		return fail(2, err)
	}
	logger, closeLog, err := newLogger(c, stderr)
	if err != nil {
		return fail(2, err)
	}
	defer closeLog() //nolint:errcheck // nothing is left to report it to
	c.log(logger)

	cfg, err := c.clientConfig()
	if err != nil {
		return fail(2, err)
	}
	// Dialling, authenticating and the probe share one --timeout.
	deadline := time.Now().Add(c.registryWait())
	cli, err := registry.NewClient(cfg)
	if err != nil {
		return fail(c.clientError(err))
	}
	defer cli.Close()

	if err := c.probe(ctx, cli, deadline); err != nil {
		return fail(1, err)
	}
	if err := c.list(ctx, cli, stdout, logger); err != nil {
		return fail(1, err)
	}
	return 0
}

// clientConfig says how list reaches etcd: the URL's cluster, or with no
// URL the etcd on --etcd-addr.
func (c *config) clientConfig() (registry.ClientConfig, error) {
	cfg := registry.ClientConfig{
		Username:    c.EtcdUser,
		Password:    c.EtcdPassword,
		CACert:      c.EtcdCACert,
		Cert:        c.EtcdCert,
		Key:         c.EtcdKey,
		DialTimeout: c.registryWait(),
	}
	switch c.Registry.Mode {
	case registryEtcd:
		cfg.Endpoints = c.Registry.Endpoints
	case registryEmbedded:
		cfg.Endpoints = []string{c.EtcdAddr}
	case registryRedis:
		return cfg, c.blameSetting("url", errors.New("not an etcd registry, which this command reads; "+
			"oslo.messaging's Redis matchmaker holds the PUBLISHERS and ROUTERS sets (redis-cli SMEMBERS)"))
	default:
		return cfg, c.blameSetting("url", errors.New("not a registry to list: zmq:// means none"))
	}
	return cfg, nil
}

// clientError is the exit code and the error of a failed NewClient: with a
// user name, the client authenticates at once, so etcd's silence or refusal
// shows here (1); anything else is a certificate file that is not one (2).
func (c *config) clientError(err error) (int, error) {
	var etcdErr rpctypes.EtcdError
	switch _, isStatus := status.FromError(err); {
	case errors.Is(err, context.DeadlineExceeded):
		return 1, c.noEtcd()
	case errors.As(err, &etcdErr) || isStatus:
		return 1, fmt.Errorf("etcd at %s: %w", strings.Join(c.endpoints(), ","), oneLine{err})
	}
	return 2, oneLine{err}
}

// probe asks etcd for the number of records, so that an etcd that does not
// answer by deadline, or refuses, is one clear error rather than a watcher
// retrying for ever.
func (c *config) probe(ctx context.Context, cli *clientv3.Client, deadline time.Time) error {
	pctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	_, err := cli.Get(pctx, registry.Key(c.EtcdPrefix, ""), clientv3.WithPrefix(), clientv3.WithCountOnly())
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("interrupted: %w", context.Cause(ctx))
	case pctx.Err() != nil || errors.Is(err, context.DeadlineExceeded):
		return c.noEtcd()
	}
	return fmt.Errorf("etcd at %s: %w", strings.Join(c.endpoints(), ","), oneLine{err})
}

// noEtcd is the error for an etcd that did not answer in time
// (registryWait).
func (c *config) noEtcd() error {
	if c.Registry.Mode == registryEmbedded {
		return fmt.Errorf("no etcd at %s: nothing answered within %s; start zmq-proxy first (it runs one there), or give -u",
			c.EtcdAddr, c.registryWait())
	}
	return fmt.Errorf("no etcd at %s (url from %s): nothing answered within %s",
		strings.Join(c.endpoints(), ","), c.settings["url"].from, c.registryWait())
}

// minRegistryWait is how long the client commands wait at least for the
// registry to answer, whatever their --timeout (the reply's or the ACK's):
// "call --timeout 1ms" must time out waiting for the reply, not for etcd.
const minRegistryWait = 2 * time.Second

// registryWait is how long a command waits for the registry to answer:
// list's --timeout; the client commands' --timeout, at least
// minRegistryWait.
func (c *config) registryWait() time.Duration {
	if c.cmd == cmdList {
		return c.ListTimeout
	}
	return max(c.ListTimeout, minRegistryWait)
}

func (c *config) endpoints() []string {
	if c.Registry.Mode == registryEmbedded {
		return []string{c.EtcdAddr}
	}
	return c.Registry.Endpoints
}

// list prints the table of the records at the first complete listing, and
// then, with --watch, each change until ctx is done. The listing must come
// within --timeout; the watch after it has no time limit.
func (c *config) list(ctx context.Context, cli *clientv3.Client, stdout io.Writer, logger *slog.Logger) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// synced (the proxies) and listed (the targets) are written on the
	// watchers' goroutines, under mu because the timer reads them: either
	// both listings are complete, or the timer ends them.
	var mu sync.Mutex
	synced, listed := false, false
	timer := time.AfterFunc(c.ListTimeout, func() {
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
		tw := registry.NewTargetWatcher(cli, c.EtcdPrefix, logger)
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
	w := registry.NewWatcher(cli, c.EtcdPrefix, logger)
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
		return c.noEtcd()
	case errors.Is(cause, errTargetsTimeout):
		return fmt.Errorf("the proxies are listed, but etcd at %s gave no listing of the servers' targets (%s) within %s",
			strings.Join(c.endpoints(), ","), registry.TargetPrefix(c.EtcdPrefix), c.ListTimeout)
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
				v = jsonEvent{Time: now(), Event: registry.EventPut.String(), Record: r}
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
			field(r.Frontend), field(r.Backend), field(r.Publisher), started(r.Started),
		}, "\t"))
	}
	return tw.Flush()
}

// jsonEvent is one change, with --watch --json.
type jsonEvent struct {
	Time   string          `json:"time"`  // when list saw it, RFC 3339, UTC
	Event  string          `json:"event"` // "put" or "delete"
	Record registry.Record `json:"record"`
}

// now is when a change was seen, as list prints it: UTC, RFC 3339 with
// milliseconds.
func now() string { return time.Now().UTC().Format(timeLayout) }

// timeLayout is RFC 3339 with milliseconds, always three digits.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// targetName is a target as the client commands take it: "topic" or
// "topic.server" (registered as "topic/server").
func targetName(target string) string { return strings.Replace(target, "/", ".", 1) }

func (p *printer) event(ev registry.Event) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.json {
		return p.jsonLine(jsonEvent{Time: now(), Event: ev.Type.String(), Record: ev.Record})
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
				v = jsonTargetEvent{Time: now(), Event: registry.EventPut.String(), Target: t}
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
		fmt.Fprintln(tw, strings.Join([]string{field(targetName(t.Target)), field(t.Identity), field(t.Host), started(t.Started)}, "\t"))
	}
	return tw.Flush()
}

// jsonTargetEvent is one change of the targets, with --watch --json.
type jsonTargetEvent struct {
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
		return p.jsonLine(jsonTargetEvent{Time: now(), Event: ev.Type.String(), Target: t})
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

func started(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
