package rpc

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/zmq-proxy/zmq-proxy/registry"
	redismm "github.com/zmq-proxy/zmq-proxy/registry/redis"
)

// DefaultRedisPoll is how often clients and servers read oslo.messaging's
// Redis matchmaker, which cannot be watched.
const DefaultRedisPoll = time.Second

// startRedis follows oslo.messaging's Redis matchmaker instead of etcd
// (docs/protocol.md, "The Redis matchmaker"): PUBLISHERS for the proxies'
// frontends and publishers, ROUTERS for the backends (servers only), and,
// for clients, DEALER/<topic>[/<server>] for each target asked for.
// Redis has no watch: the sets are read every poll interval.
func (d *discovery) startRedis(ctx context.Context, mm *redismm.Matchmaker, every time.Duration, client bool) {
	d.redis, d.poll = mm, every
	var mu sync.Mutex // serialises the merged view and onProxies
	publishers, routers := []string(nil), []string(nil)
	pending := 2
	if client {
		pending = 1 // a client has no use for ROUTERS
	}
	report := func() {
		recs := make(map[string]registry.Record)
		for _, m := range publishers {
			pub, fe, ok := strings.Cut(m, ",")
			if !ok || fe == "" {
				d.log.Debug("PUBLISHERS member ignored", "member", m)
				continue
			}
			r := registry.Record{ID: "redis/" + fe, Kind: "double-router"}
			if pub != "" {
				r.Publisher = "tcp://" + pub
			}
			if client {
				r.Frontend = "tcp://" + fe
			}
			recs[r.ID] = r
		}
		for _, be := range routers {
			recs["redis-router/"+be] = registry.Record{ID: "redis-router/" + be, Kind: "double-router", Backend: "tcp://" + be}
		}
		d.onProxies(recs)
	}
	// What Redis lists, with the members it stopped listing kept for
	// redisGrace (a Redis restarted empty lists no proxy until
	// they write themselves again; dropping and re-adding their links
	// would cost what waits on them).
	raw := map[*[]string][]string{}
	gone := map[*[]string]map[string]time.Time{}
	view := func(into *[]string, now time.Time) []string {
		out := slices.Clone(raw[into])
		for m, since := range gone[into] {
			if now.Sub(since) < redisGrace(every) {
				out = append(out, m)
			} else {
				delete(gone[into], m)
			}
		}
		slices.Sort(out)
		return out
	}
	follow := func(key string, into *[]string) {
		defer d.wg.Done()
		first := true
		_ = mm.Follow(ctx, key, every, func(members []string) {
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
				close(d.synced)
				return
			}
			if pending == 0 {
				report()
			}
		})
	}
	// The grace ends on its own: every poll, what has been missing long
	// enough goes.
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		tick := time.NewTicker(every)
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
	d.wg.Add(1)
	go follow(redismm.PublishersKey, &publishers)
	if !client {
		d.wg.Add(1)
		go follow(redismm.RoutersKey, &routers)
		return
	}
	d.wg.Add(1)
	go d.refreshTargets(ctx)
}

// redisKey is the matchmaker's key of a target ("topic", "topic/server").
func redisKey(target string) string {
	topic, server, ok := strings.Cut(target, "/")
	if !ok {
		return redismm.TopicKey(topic)
	}
	return redismm.ServerKey(topic, server)
}

// lookup reads a target's identities from Redis the first time it is
// asked for, and follows it from then on. With etcd it does nothing: every
// target is followed already.
func (d *discovery) lookup(ctx context.Context, target string) error {
	if d.redis == nil {
		return nil
	}
	d.mu.Lock()
	_, known := d.followed[target]
	d.mu.Unlock()
	if known {
		return nil
	}
	ids, err := d.redis.LiveMembers(ctx, redisKey(target))
	if err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	d.setTarget(target, ids)
	return nil
}

// refreshTargets reads every followed target each poll interval.
func (d *discovery) refreshTargets(ctx context.Context) {
	defer d.wg.Done()
	tick := time.NewTicker(d.poll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		d.mu.Lock()
		targets := make([]string, 0, len(d.followed))
		for t := range d.followed {
			targets = append(targets, t)
		}
		d.mu.Unlock()
		for _, t := range targets {
			rctx, cancel := context.WithTimeout(ctx, d.poll)
			ids, err := d.redis.LiveMembers(rctx, redisKey(t))
			cancel()
			if err != nil {
				continue // Follow of PUBLISHERS logs the outage once
			}
			d.setTarget(t, ids)
		}
	}
}

// redisGrace is how long an identity or a proxy that Redis no longer
// lists is kept: three polls, and at least 3 s. A Redis restarted without
// its data lists nothing until the proxies and servers write themselves
// again (registry/redis.Registrar looks every second), and a client must
// not take that for everything gone. A server that really left is NACKed
// by the proxies meanwhile.
func redisGrace(poll time.Duration) time.Duration { return max(3*poll, 3*time.Second) }

// setTarget makes ids the identities of target, reporting the difference
// as the etcd watcher would; an identity missing from ids goes only once
// it has been missing for redisGrace.
func (d *discovery) setTarget(target string, ids []string) {
	now := time.Now()
	d.mu.Lock()
	if d.followed == nil {
		d.followed = make(map[string]bool)
		d.missing = make(map[string]time.Time)
	}
	d.followed[target] = true
	var old []string
	if ts := d.targets[target]; ts != nil {
		old = ts.ids
	}
	for _, id := range ids {
		delete(d.missing, target+"\x00"+id)
	}
	kept := ids
	for _, id := range old {
		if slices.Contains(ids, id) {
			continue
		}
		k := target + "\x00" + id
		since, ok := d.missing[k]
		if !ok {
			d.missing[k], since = now, now
		}
		if now.Sub(since) < redisGrace(d.poll) {
			kept = append(kept[:len(kept):len(kept)], id)
		} else {
			delete(d.missing, k)
		}
	}
	ids = kept
	d.mu.Unlock()
	for _, id := range ids {
		if !slices.Contains(old, id) {
			d.applyTarget(registry.TargetEvent{Type: registry.EventPut, Target: registry.Target{Target: target, Identity: id}})
		}
	}
	for _, id := range old {
		if !slices.Contains(ids, id) {
			d.applyTarget(registry.TargetEvent{Type: registry.EventDelete, Target: registry.Target{Target: target, Identity: id}})
		}
	}
}
