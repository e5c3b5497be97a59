package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	redismm "github.com/zmq-proxy/zmq-proxy/registry/redis"
)

// redisRegistry is the Registry in oslo.messaging's Redis matchmaker
// (docs/protocol.md, "The Redis matchmaker"): a proxy is a PUBLISHERS and a
// ROUTERS member, a server a DEALER/<topic> and DEALER/<topic>/<server>
// member; they are read every Options.Poll.
type redisRegistry struct {
	mm      *redismm.Matchmaker
	opts    Options
	closers []func() error
}

// NewRedis is the Registry in oslo.messaging's Redis matchmaker, through
// mm, which it does not close.
func NewRedis(mm *redismm.Matchmaker, o Options) Registry {
	return &redisRegistry{mm: mm, opts: o.withDefaults()}
}

// grace is how long an entry that Redis no longer lists is kept: three
// polls, and at least 3 s. A Redis restarted without its data lists
// nothing until the proxies and servers write themselves again
// (redismm.Registrar looks every second), and a reader must not take that
// for everything gone. A server that really left is NACKed by the proxies
// meanwhile.
func (r *redisRegistry) grace() time.Duration { return max(3*r.opts.Poll, 3*time.Second) }

func redisTTL(ttl time.Duration) time.Duration {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	return max(ttl.Truncate(time.Second), time.Second)
}

// hostport is an address as the matchmaker holds it: host:port.
func hostport(addr string) string { return strings.TrimPrefix(addr, "tcp://") }

// RegisterProxy writes what oslo.messaging's proxy writes: PUBLISHERS <-
// "<publisher>,<frontend>" (the publisher empty in router-only mode),
// ROUTERS <- "<backend>", or the frontend of a single-router proxy.
func (r *redisRegistry) RegisterProxy(rec Record, o RegisterOptions) (Registration, error) {
	if err := rec.Validate(); err != nil {
		return nil, err
	}
	if rec.Kind == KindLocal {
		return nil, fmt.Errorf("%w: the redis matchmaker has no record of a local publisher proxy", ErrUnsupported)
	}
	fe := hostport(rec.Frontend)
	routers := fe
	if rec.Backend != "" {
		routers = hostport(rec.Backend)
	}
	return r.register(o, []redismm.Entry{
		{Key: redismm.PublishersKey, Member: hostport(rec.Publisher) + "," + fe},
		{Key: redismm.RoutersKey, Member: routers},
	})
}

// RegisterTargets writes DEALER/<topic> <- identity and, for a target
// topic/server, DEALER/<topic>/<server> <- identity, as oslo.messaging's
// servers do.
func (r *redisRegistry) RegisterTargets(o RegisterOptions, targets ...Target) (Registration, error) {
	if len(targets) == 0 {
		return nil, fmt.Errorf("%w: no target to register", ErrBadRecord)
	}
	entries := make([]redismm.Entry, 0, len(targets))
	for _, t := range targets {
		if err := t.Validate(); err != nil {
			return nil, err
		}
		entries = append(entries, redismm.Entry{Key: redisKey(t.Target), Member: t.Identity})
	}
	return r.register(o, entries)
}

func (r *redisRegistry) register(o RegisterOptions, entries []redismm.Entry) (Registration, error) {
	reg, err := redismm.NewRegistrar(redismm.RegistrarConfig{Matchmaker: r.mm, Entries: entries,
		TTL: redisTTL(o.TTL), Update: r.opts.Update, Logger: o.logger(r.opts.Logger)})
	if err != nil {
		return nil, err
	}
	return redisRegistration{reg}, nil
}

// redisRegistration: the matchmaker has no draining mark.
type redisRegistration struct{ *redismm.Registrar }

func (redisRegistration) UpdateTargets(context.Context, ...Target) error {
	return fmt.Errorf("%w: the redis matchmaker has no draining mark", ErrUnsupported)
}

// redisKey is the matchmaker's key of a target ("topic", "topic/server").
func redisKey(target string) string {
	topic, server, ok := strings.Cut(target, "/")
	if !ok {
		return redismm.TopicKey(topic)
	}
	return redismm.ServerKey(topic, server)
}

// WatchProxies follows PUBLISHERS (and ROUTERS, for o.Backends), each
// member a record: "redis/<frontend>" with the publisher (and, without
// o.Backends, the frontend), "redis-router/<backend>" with the backend.
func (r *redisRegistry) WatchProxies(ctx context.Context, o WatchOptions, fn func(map[string]Record)) error {
	log := o.logger(r.opts.Logger)
	var wg sync.WaitGroup
	var mu sync.Mutex // serialises the merged view and fn
	publishers, routers := []string(nil), []string(nil)
	pending := 1 // the keys not listed yet
	if o.Backends {
		pending = 2
	}
	report := func() {
		recs := make(map[string]Record)
		for _, m := range publishers {
			pub, fe, ok := strings.Cut(m, ",")
			if !ok || fe == "" {
				log.Debug("PUBLISHERS member ignored", "member", m)
				continue
			}
			rec := Record{ID: "redis/" + fe, Kind: "double-router"}
			if _, _, err := net.SplitHostPort(pub); err == nil {
				rec.Publisher = "tcp://" + pub // a router-only proxy publishes nothing
			}
			if !o.Backends {
				rec.Frontend = "tcp://" + fe
			}
			recs[rec.ID] = rec
		}
		for _, be := range routers {
			recs["redis-router/"+be] = Record{ID: "redis-router/" + be, Kind: "double-router", Backend: "tcp://" + be}
		}
		fn(recs)
	}
	// What Redis lists, with the members it stopped listing kept for the
	// grace (dropping and re-adding their links would cost what waits on
	// them).
	raw := map[*[]string][]string{}
	gone := map[*[]string]map[string]time.Time{}
	view := func(into *[]string, now time.Time) []string {
		out := slices.Clone(raw[into])
		for m, since := range gone[into] {
			if now.Sub(since) < r.grace() {
				out = append(out, m)
			} else {
				delete(gone[into], m)
			}
		}
		slices.Sort(out)
		return out
	}
	follow := func(key string, into *[]string) {
		defer wg.Done()
		first := true
		_ = r.mm.Follow(ctx, key, r.opts.Poll, func(members []string) {
			mu.Lock()
			defer mu.Unlock()
			now := time.Now()
			if gone[into] == nil {
				gone[into] = map[string]time.Time{}
			}
			for _, m := range *into {
				if !slices.Contains(members, m) {
					if _, ok := gone[into][m]; !ok {
						gone[into][m] = now
					}
				}
			}
			for _, m := range members {
				delete(gone[into], m)
			}
			raw[into] = members
			*into = view(into, now)
			if first {
				first = false
				if pending--; pending > 0 {
					return
				}
				report()
				return
			}
			if pending == 0 {
				report()
			}
		})
	}
	// The grace ends on its own: every poll, what has been missing long
	// enough goes.
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(r.opts.Poll)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-tick.C:
				mu.Lock()
				changed := false
				for _, into := range []*[]string{&publishers, &routers} {
					if v := view(into, now); !slices.Equal(v, *into) {
						*into, changed = v, true
					}
				}
				if changed && pending == 0 {
					report()
				}
				mu.Unlock()
			}
		}
	}()
	wg.Add(1)
	go follow(redismm.PublishersKey, &publishers)
	if o.Backends {
		wg.Add(1)
		go follow(redismm.RoutersKey, &routers)
	}
	wg.Wait()
	return ctx.Err()
}

func (r *redisRegistry) WatchTargets(o WatchOptions) TargetWatch {
	return &redisTargets{r: r, log: o.logger(r.opts.Logger), followed: make(map[string][]string),
		missing: make(map[string]time.Time)}
}

// redisTargets reads the targets wanted so far, every poll.
type redisTargets struct {
	r   *redisRegistry
	log *slog.Logger

	mu       sync.Mutex // serialises the reports to fn
	fn       func(TargetEvent)
	followed map[string][]string  // target -> the identities reported
	missing  map[string]time.Time // target + "\x00" + identity no longer listed, since
}

var errNotRunning = errors.New("registry: target watch not running")

// Run has nothing to list (the matchmaker cannot list every target): it
// reports synced at once, then reads every wanted target each poll.
func (w *redisTargets) Run(ctx context.Context, fn func(TargetEvent), synced func()) error {
	w.mu.Lock()
	w.fn = fn
	w.mu.Unlock()
	if synced != nil {
		synced()
	}
	tick := time.NewTicker(w.r.opts.Poll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		w.mu.Lock()
		targets := slices.Collect(maps.Keys(w.followed))
		w.mu.Unlock()
		for _, t := range targets {
			rctx, cancel := context.WithTimeout(ctx, w.r.opts.Poll)
			ids, err := w.r.mm.LiveMembers(rctx, redisKey(t))
			cancel()
			if err != nil {
				continue // the proxies' Follow of PUBLISHERS logs the outage once
			}
			w.set(t, ids)
		}
	}
}

// Want reads target the first time it is wanted, and follows it from then on.
func (w *redisTargets) Want(ctx context.Context, target string) error {
	w.mu.Lock()
	_, known := w.followed[target]
	running := w.fn != nil
	w.mu.Unlock()
	if known {
		return nil
	}
	if !running {
		return errNotRunning
	}
	ids, err := w.r.mm.LiveMembers(ctx, redisKey(target))
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	w.set(target, ids)
	return nil
}

// set makes ids the identities of target, reporting the difference as the
// etcd watcher would; an identity missing from ids goes only once it has
// been missing for the grace.
func (w *redisTargets) set(target string, ids []string) {
	now := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	old := w.followed[target]
	for _, id := range ids {
		delete(w.missing, target+"\x00"+id)
	}
	kept := slices.Clone(ids)
	for _, id := range old {
		if slices.Contains(ids, id) {
			continue
		}
		k := target + "\x00" + id
		since, ok := w.missing[k]
		if !ok {
			w.missing[k], since = now, now
		}
		if now.Sub(since) < w.r.grace() {
			kept = append(kept, id)
		} else {
			delete(w.missing, k)
		}
	}
	w.followed[target] = kept
	for _, id := range kept {
		if !slices.Contains(old, id) {
			w.fn(TargetEvent{Type: EventPut, Target: Target{Target: target, Identity: id}})
		}
	}
	for _, id := range old {
		if !slices.Contains(kept, id) {
			w.fn(TargetEvent{Type: EventDelete, Target: Target{Target: target, Identity: id}})
		}
	}
}

func (r *redisRegistry) String() string { return "redis at " + r.mm.Addr() }

func (r *redisRegistry) Close() error {
	err := closeAll(r.closers)
	r.closers = nil
	return err
}
