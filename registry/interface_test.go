package registry

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
	redismm "github.com/zmq-proxy/zmq-proxy/registry/redis"
)

// impl is one implementation of Registry under test, with what a test
// needs to look behind it.
type impl struct {
	reg Registry
	// stored reports whether the proxy record of record("p1") is written.
	stored func() bool
	// lose makes the registry lose every registration without a word:
	// etcd's leases revoked, Redis flushed.
	lose func()
}

func etcdImpl(t *testing.T) impl {
	etcd := testutil.Embedded(t)
	cli := newClient(t, etcd.Endpoints())
	return impl{
		reg:    NewEtcd(cli, Options{Logger: testutil.Quiet()}),
		stored: func() bool { return keyExists(t, cli, "p1") },
		lose: func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			ls, err := cli.Leases(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range ls.Leases {
				if _, err := cli.Revoke(ctx, l.ID); err != nil {
					t.Fatal(err)
				}
			}
		},
	}
}

func redisImpl(t *testing.T, poll time.Duration) (impl, *redismm.Matchmaker) {
	r := testutil.StartRedis(t, testutil.RedisOptions{})
	mm := redismm.New(redismm.Config{Addr: r.Addr(), Logger: testutil.Quiet()})
	t.Cleanup(func() { mm.Close() })
	admin := goredis.NewClient(&goredis.Options{Addr: r.Addr(), Protocol: 2, DisableIdentity: true})
	t.Cleanup(func() { admin.Close() })
	return impl{
		reg: NewRedis(mm, Options{Poll: poll, Logger: testutil.Quiet()}),
		stored: func() bool {
			live, err := mm.LiveMembers(context.Background(), redismm.PublishersKey)
			return err == nil && len(live) == 1 && live[0] == "127.0.0.1:3,127.0.0.1:1"
		},
		lose: func() {
			if err := admin.FlushAll(context.Background()).Err(); err != nil {
				t.Fatal(err)
			}
		},
	}, mm
}

// proxySet runs WatchProxies and keeps the last set it reported.
type proxySet struct {
	mu   sync.Mutex
	recs map[string]Record
	n    int // reports
	at   time.Time
}

func watchProxies(t *testing.T, reg Registry, o WatchOptions) *proxySet {
	t.Helper()
	s := &proxySet{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = reg.WatchProxies(ctx, o, func(recs map[string]Record) {
			s.mu.Lock()
			s.recs, s.at = recs, time.Now()
			s.n++
			s.mu.Unlock()
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

func (s *proxySet) get() (map[string]Record, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.recs, s.at
}

// Through the interface, for both registries: a proxy's registration is
// Ready, seen by a watcher, Lost when the registry drops it without a
// word (etcd's lease revoked, Redis flushed), written again by itself,
// and gone from the watcher after Close.
func TestRegistrationLostAndRegisteredAgain(t *testing.T) {
	for _, name := range []string{"etcd", "redis"} {
		t.Run(name, func(t *testing.T) {
			var im impl
			if name == "etcd" {
				im = etcdImpl(t)
			} else {
				im, _ = redisImpl(t, 100*time.Millisecond)
			}
			w := watchProxies(t, im.reg, WatchOptions{})
			r, err := im.reg.RegisterProxy(record("p1"), RegisterOptions{TTL: 10 * time.Second}) // Redis looks for lost entries between writes (every TTL/3)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			select {
			case <-r.Ready():
			case <-time.After(wait):
				t.Fatal("not Ready")
			}
			testutil.CheckFor(t, wait, func() error {
				if recs, _ := w.get(); len(recs) != 1 {
					return fmt.Errorf("watcher has %v, want the proxy", recs)
				}
				return nil
			})
			lost := r.Lost()
			im.lose()
			select {
			case <-lost:
			case <-time.After(wait):
				t.Fatal("Lost not closed after the registry dropped the registration")
			}
			testutil.CheckFor(t, wait, func() error {
				if !r.Registered() || !im.stored() {
					return fmt.Errorf("not registered again: Registered %v, stored %v", r.Registered(), im.stored())
				}
				return nil
			})
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			if im.stored() {
				t.Error("record still stored after Close")
			}
			testutil.CheckFor(t, wait, func() error {
				if recs, _ := w.get(); len(recs) != 0 {
					return fmt.Errorf("watcher still has %v after Close", recs)
				}
				return nil
			})
		})
	}
}

// The Redis matchmaker keeps a proxy and a server's identity that it stops
// listing for its grace (three polls, at least 3 s) before a watcher is
// told they are gone: a Redis restarted empty lists nothing until they
// write themselves again.
func TestRedisGrace(t *testing.T) {
	const poll = 100 * time.Millisecond
	im, mm := redisImpl(t, poll)
	ctx := context.Background()
	const id = "h/demo/s1/uuid"
	if err := mm.Register(ctx, redismm.TopicKey("demo"), id, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := mm.Register(ctx, redismm.PublishersKey, "127.0.0.1:3,127.0.0.1:1", time.Minute); err != nil {
		t.Fatal(err)
	}
	w := watchProxies(t, im.reg, WatchOptions{})
	testutil.CheckFor(t, wait, func() error {
		if recs, _ := w.get(); len(recs) != 1 {
			return fmt.Errorf("watcher has %v, want the proxy", recs)
		}
		return nil
	})

	var mu sync.Mutex
	var events []TargetEvent
	var goneAt time.Time
	tw := im.reg.WatchTargets(WatchOptions{})
	wctx, cancel := context.WithCancel(ctx)
	done, synced := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		_ = tw.Run(wctx, func(ev TargetEvent) {
			mu.Lock()
			defer mu.Unlock()
			events = append(events, ev)
			if ev.Type == EventDelete {
				goneAt = time.Now()
			}
		}, func() { close(synced) })
	}()
	defer func() { cancel(); <-done }()
	<-synced
	if err := tw.Want(ctx, "demo"); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if len(events) != 1 || events[0].Type != EventPut || events[0].Target.Identity != id {
		t.Fatalf("after Want: %+v, want one put of %s", events, id)
	}
	mu.Unlock()

	start := time.Now()
	if err := mm.Unregister(ctx, redismm.TopicKey("demo"), id); err != nil {
		t.Fatal(err)
	}
	if err := mm.Unregister(ctx, redismm.PublishersKey, "127.0.0.1:3,127.0.0.1:1"); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, wait, func() error {
		mu.Lock()
		defer mu.Unlock()
		if goneAt.IsZero() {
			return errors.New("identity not reported gone")
		}
		if recs, _ := w.get(); len(recs) != 0 {
			return fmt.Errorf("watcher still has %v", recs)
		}
		return nil
	})
	_, proxyGoneAt := w.get()
	mu.Lock()
	defer mu.Unlock()
	if d := goneAt.Sub(start); d < 3*time.Second {
		t.Errorf("identity reported gone %v after Redis stopped listing it, want the grace (3 s) first", d)
	}
	if d := proxyGoneAt.Sub(start); d < 3*time.Second {
		t.Errorf("proxy reported gone %v after Redis stopped listing it, want the grace (3 s) first", d)
	}
	if len(events) != 2 {
		t.Errorf("events %+v, want one put and one delete", events)
	}
}

// What the Redis matchmaker has no place for is refused with
// ErrUnsupported: a local publisher proxy's record, the draining mark.
func TestRedisUnsupported(t *testing.T) {
	im, _ := redisImpl(t, 100*time.Millisecond)
	rec := record("local")
	rec.Kind = KindLocal
	if _, err := im.reg.RegisterProxy(rec, RegisterOptions{}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("RegisterProxy of a local publisher proxy: %v, want ErrUnsupported", err)
	}
	r, err := im.reg.RegisterTargets(RegisterOptions{}, Target{Target: "demo", Identity: "h/demo/x"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.UpdateTargets(context.Background(), Target{Target: "demo", Identity: "h/demo/x", Draining: true}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("UpdateTargets: %v, want ErrUnsupported", err)
	}
}
