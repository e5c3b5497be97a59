package rpc

import (
	"context"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/zmq-proxy/zmq-proxy/registry"
	redismm "github.com/zmq-proxy/zmq-proxy/registry/redis"
)

// discovery follows the registry: the proxies (for everyone) and the
// servers' targets (for clients). It watches etcd; Redis, which has no
// watch, it reads every poll interval (redis.go). Its
// goroutines end when ctx is done and wait() returns.
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

	mu       sync.Mutex
	targets  map[string]*targetSet // by target: "topic" or "topic/server"
	followed map[string]bool       // Redis: the targets read each poll

	redis *redismm.Matchmaker // instead of etcd, when set
	poll  time.Duration
}

// targetSet is the identities registered for one target.
type targetSet struct {
	ids []string // sorted
	rr  atomic.Uint32
}

func newDiscovery(log *slog.Logger, onProxies func(map[string]registry.Record), onTargetGone func(string)) *discovery {
	return &discovery{log: log, synced: make(chan struct{}), onProxies: onProxies,
		onTargetGone: onTargetGone, targets: make(map[string]*targetSet)}
}

// start follows the proxies, and the targets if withTargets.
func (d *discovery) start(ctx context.Context, cli *clientv3.Client, prefix string, withTargets bool) {
	pending := 1
	if withTargets {
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
	pw := registry.NewWatcher(cli, prefix, d.log)
	proxies := make(map[string]registry.Record)
	proxiesListed := false // the first listing reports the whole set at once
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		_ = pw.Run(ctx, func(ev registry.Event) {
			if ev.Type == registry.EventDelete {
				delete(proxies, ev.ID)
			} else {
				proxies[ev.ID] = ev.Record
			}
			if proxiesListed {
				d.onProxies(proxies)
			}
		}, func() {
			proxiesListed = true
			d.onProxies(proxies)
			first.Do(listed)
		})
	}()
	if !withTargets {
		return
	}
	var firstT sync.Once
	tw := registry.NewTargetWatcher(cli, prefix, d.log)
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		_ = tw.Run(ctx, func(ev registry.TargetEvent) {
			d.applyTarget(ev)
		}, func() { firstT.Do(listed) })
	}()
}

func (d *discovery) applyTarget(ev registry.TargetEvent) {
	t := ev.Target
	d.mu.Lock()
	ts := d.targets[t.Target]
	var ids []string
	if ts != nil {
		ids = ts.ids
	}
	i := sort.SearchStrings(ids, t.Identity)
	has := i < len(ids) && ids[i] == t.Identity
	switch {
	case ev.Type == registry.EventPut && !has:
		ids = append(ids[:i:i], append([]string{t.Identity}, ids[i:]...)...)
	case ev.Type == registry.EventDelete && has:
		ids = append(ids[:i:i], ids[i+1:]...)
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
		}
		d.targets[t.Target] = next
	}
	d.mu.Unlock()
	if ev.Type == registry.EventDelete && d.onTargetGone != nil && !d.registered(t.Identity) {
		d.onTargetGone(t.Identity)
	}
}

// registered reports whether identity is registered for any target.
func (d *discovery) registered(identity string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, ts := range d.targets {
		i := sort.SearchStrings(ts.ids, identity)
		if i < len(ts.ids) && ts.ids[i] == identity {
			return true
		}
	}
	return false
}

// pick returns the next identity for target, round-robin, skipping those
// for which avoid is true when another is there. "" when none is
// registered.
func (d *discovery) pick(target string, avoid func(string) bool) string {
	d.mu.Lock()
	ts := d.targets[target]
	d.mu.Unlock()
	if ts == nil {
		return ""
	}
	n := len(ts.ids)
	start := int(ts.rr.Add(1))
	for i := range n {
		if id := ts.ids[(start+i)%n]; avoid == nil || !avoid(id) {
			return id
		}
	}
	return ts.ids[start%n]
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
