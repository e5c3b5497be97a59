package rpc

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zmq-proxy/zmq-proxy/registry"
)

// discovery follows the registry: the proxies (for everyone) and the
// servers' targets (for clients), through registry.Registry's watches.
// Its goroutines end when ctx is done and wg.Wait returns.
type discovery struct {
	log    *slog.Logger
	synced chan struct{} // closed once proxies (and targets, if followed) are listed
	wg     sync.WaitGroup

	// onProxies gets the whole set after every change, on the watcher's
	// goroutine.
	onProxies func(map[string]registry.Record)
	// onTargetGone is told of an identity no longer registered for a
	// target, on the watcher's goroutine.
	onTargetGone func(identity string)

	mu      sync.Mutex
	targets map[string]*targetSet // by target: "topic" or "topic/server"
	info    map[string]*idInfo    // by identity
	newest  map[string]int64      // by server name: the newest generation registered

	tw registry.TargetWatch // a client's; nil for a server
}

// targetSet is the identities registered for one target.
type targetSet struct {
	ids  []string // sorted
	live []string // of those, the ones to choose from (discovery.usable)
	rr   atomic.Uint32
}

func newDiscovery(log *slog.Logger, onProxies func(map[string]registry.Record), onTargetGone func(string)) *discovery {
	return &discovery{log: log, synced: make(chan struct{}), onProxies: onProxies,
		onTargetGone: onTargetGone, targets: make(map[string]*targetSet)}
}

// start follows the proxies, and, for a client, the targets: a client
// connects to the proxies' frontends, a server to their backends.
func (d *discovery) start(ctx context.Context, reg registry.Registry, client bool) {
	pending := 1
	if client {
		pending = 2
	}
	var mu sync.Mutex
	listed := func() {
		mu.Lock()
		defer mu.Unlock()
		if pending--; pending == 0 {
			close(d.synced)
		}
	}
	var first sync.Once
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		_ = reg.WatchProxies(ctx, registry.WatchOptions{Backends: !client, Logger: d.log}, func(recs map[string]registry.Record) {
			d.onProxies(recs)
			first.Do(listed)
		})
	}()
	if !client {
		return
	}
	var firstT sync.Once
	d.tw = reg.WatchTargets(registry.WatchOptions{Logger: d.log})
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		_ = d.tw.Run(ctx, d.applyTarget, func() { firstT.Do(listed) })
	}()
}

// lookup makes sure target's registrations are known: the registry reads
// them the first time they are asked for if it cannot list every target
// (registry.TargetWatch.Want).
func (d *discovery) lookup(ctx context.Context, target string) error {
	if d.tw == nil {
		return nil
	}
	return d.tw.Want(ctx, target)
}

// applyTarget takes one change of a target registration. Beside the
// identities of each target it keeps what clients need to choose among
// them: which are draining (registered, sent nothing new) and which are
// fenced (an older registration of a server whose newer one is there:
// ignored as if gone).
func (d *discovery) applyTarget(ev registry.TargetEvent) {
	t := ev.Target
	d.mu.Lock()
	if d.info == nil {
		d.info, d.newest = make(map[string]*idInfo), make(map[string]int64)
	}
	// Who may change state: this identity, and the others of its name.
	before := d.liveStates(t.Identity, t.Name())
	ts := d.targets[t.Target]
	var ids []string
	if ts != nil {
		ids = ts.ids
	}
	i := sort.SearchStrings(ids, t.Identity)
	has := i < len(ids) && ids[i] == t.Identity
	info := d.info[t.Identity]
	switch {
	case ev.Type == registry.EventPut:
		if !has {
			ids = append(ids[:i:i], append([]string{t.Identity}, ids[i:]...)...)
		}
		if info == nil {
			info = &idInfo{targets: make(map[string]bool)}
			d.info[t.Identity] = info
		}
		info.targets[t.Target] = true
		info.name, info.gen, info.draining = t.Name(), t.Generation, t.Draining
		if info.name != "" && info.gen > d.newest[info.name] {
			d.newest[info.name] = info.gen
		}
	case has:
		ids = append(ids[:i:i], ids[i+1:]...)
		if info != nil {
			delete(info.targets, t.Target)
			if len(info.targets) == 0 {
				delete(d.info, t.Identity)
			}
		}
	default:
		d.mu.Unlock()
		return
	}
	if len(ids) == 0 {
		delete(d.targets, t.Target)
	} else {
		next := &targetSet{ids: ids}
		if ts != nil {
			next.rr.Store(ts.rr.Load())
		} else {
			// A new client's first choice is random, so that clients
			// started together do not all begin with one server.
			next.rr.Store(rand.Uint32())
		}
		d.targets[t.Target] = next
	}
	for _, ts := range d.targets {
		ts.live = ts.live[:0:0]
		for _, id := range ts.ids {
			if d.usable(id) {
				ts.live = append(ts.live, id)
			}
		}
	}
	var gone []string
	for id, was := range before {
		if was && !d.registeredLocked(id) {
			gone = append(gone, id)
		}
	}
	d.mu.Unlock()
	if d.onTargetGone != nil {
		for _, id := range gone {
			d.onTargetGone(id)
		}
	}
}

// idInfo is what discovery knows of one registered identity.
type idInfo struct {
	targets  map[string]bool // the targets it is registered for
	name     string          // registry.Target.Name: host/topic/server, or ""
	gen      int64
	draining bool
}

// liveStates reports, for identity and every identity of name, whether it
// is registered (and not fenced) now; under mu.
func (d *discovery) liveStates(identity, name string) map[string]bool {
	st := map[string]bool{identity: d.registeredLocked(identity)}
	if name != "" {
		for id, in := range d.info {
			if in.name == name {
				st[id] = d.registeredLocked(id)
			}
		}
	}
	return st
}

// fenced: a registration older than the newest of its server's; under mu.
func (d *discovery) fenced(in *idInfo) bool {
	return in.name != "" && in.gen > 0 && in.gen < d.newest[in.name]
}

// usable: registered, not fenced, not draining; under mu.
func (d *discovery) usable(identity string) bool {
	in := d.info[identity]
	return in != nil && !in.draining && !d.fenced(in)
}

// registeredLocked: registered for some target and not fenced; under mu.
func (d *discovery) registeredLocked(identity string) bool {
	in := d.info[identity]
	return in != nil && !d.fenced(in)
}

// registered reports whether identity is registered for any target (and
// is not a fenced older registration). A draining server is registered.
func (d *discovery) registered(identity string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.registeredLocked(identity)
}

// pick returns the next identity for target, round-robin, among those
// that are neither draining nor fenced, skipping those for which avoid is
// true when another is there. "" when none is there.
func (d *discovery) pick(target string, avoid func(string) bool) string {
	d.mu.Lock()
	ts := d.targets[target]
	var live []string
	if ts != nil {
		live = ts.live
	}
	d.mu.Unlock()
	if len(live) == 0 {
		return ""
	}
	n := len(live)
	start := int(ts.rr.Add(1))
	for i := range n {
		if id := live[(start+i)%n]; avoid == nil || !avoid(id) {
			return id
		}
	}
	return live[start%n]
}

// identities lists what is registered for target.
func (d *discovery) identities(target string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if ts := d.targets[target]; ts != nil {
		return append([]string(nil), ts.ids...)
	}
	return nil
}

// waitSynced waits for the first listing, or ctx.
func (d *discovery) waitSynced(ctx context.Context) error {
	select {
	case <-d.synced:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// backoffFor is the ack timeout of attempt n (0 = the first send).
func backoffFor(base time.Duration, mult float64, n int) time.Duration {
	d := float64(base)
	for range n {
		d *= mult
	}
	return time.Duration(d)
}
