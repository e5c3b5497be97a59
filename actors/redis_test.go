package actors

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
	redismm "github.com/zmq-proxy/zmq-proxy/registry/redis"
)

// liveSet is the live members of key, read as oslo.messaging reads them.
func liveSet(t *testing.T, m *redismm.Matchmaker, key string) []string {
	t.Helper()
	got, err := m.LiveMembers(context.Background(), key)
	if err != nil {
		t.Fatalf("LiveMembers(%s): %v", key, err)
	}
	return got
}

func hostport(ep string) string { return strings.TrimPrefix(ep, "tcp://") }

func TestProxyRegistersInRedis(t *testing.T) {
	r := testutil.StartRedis(t, testutil.RedisOptions{})
	m := redismm.New(redismm.Config{Addr: r.Addr(), Logger: testutil.Quiet()})
	defer m.Close()
	reg := RegistryConfig{TTL: 5 * time.Second, Redis: RedisConfig{Addr: r.Addr(), Update: time.Second}}

	p := startProxy(t, Config{Kind: KindDoubleRouter, Registry: reg})
	a := p.Addrs()
	wantPub := []string{hostport(a.Publisher) + "," + hostport(a.Frontend)}
	wantRouters := []string{hostport(a.Backend)}
	testutil.CheckFor(t, wait, func() error {
		if !p.Registered() {
			return fmt.Errorf("Registered: false")
		}
		if got := liveSet(t, m, redismm.PublishersKey); !slices.Equal(got, wantPub) {
			return fmt.Errorf("PUBLISHERS: got %q, want %q", got, wantPub)
		}
		if got := liveSet(t, m, redismm.RoutersKey); !slices.Equal(got, wantRouters) {
			return fmt.Errorf("ROUTERS: got %q, want %q", got, wantRouters)
		}
		return nil
	})
	p.Close()
	if got := liveSet(t, m, redismm.PublishersKey); len(got) != 0 {
		t.Errorf("PUBLISHERS after Close: got %q, want none", got)
	}
	if got := liveSet(t, m, redismm.RoutersKey); len(got) != 0 {
		t.Errorf("ROUTERS after Close: got %q, want none", got)
	}
}

// A single-router proxy's ROUTERS member is its frontend; a router-only
// proxy has no publisher, so its PUBLISHERS member has an empty first
// element.
func TestSingleRouterAndRouterOnlyInRedis(t *testing.T) {
	r := testutil.StartRedis(t, testutil.RedisOptions{})
	m := redismm.New(redismm.Config{Addr: r.Addr(), Logger: testutil.Quiet()})
	defer m.Close()
	reg := RegistryConfig{TTL: 5 * time.Second, Redis: RedisConfig{Addr: r.Addr()}}
	port := freePort(t)
	p := startProxy(t, Config{Kind: KindSingleRouter, FrontendPort: port, PubSub: PubSubOff, Registry: reg})
	a := p.Addrs()
	if a.Publisher != "" || a.Backend != "" {
		t.Fatalf("router-only single-router proxy bound %+v, want a frontend only", a)
	}
	fe := hostport(a.Frontend)
	testutil.CheckFor(t, wait, func() error {
		if got, want := liveSet(t, m, redismm.PublishersKey), []string{"," + fe}; !slices.Equal(got, want) {
			return fmt.Errorf("PUBLISHERS: got %q, want %q", got, want)
		}
		if got, want := liveSet(t, m, redismm.RoutersKey), []string{fe}; !slices.Equal(got, want) {
			return fmt.Errorf("ROUTERS: got %q, want %q", got, want)
		}
		return nil
	})
}

// A local proxy without subscribe_on follows PUBLISHERS in Redis: it
// subscribes to a central proxy registered there, drops it when it
// unregisters, and picks up its successor.
func TestLocalPublisherFollowsRedis(t *testing.T) {
	r := testutil.StartRedis(t, testutil.RedisOptions{})
	reg := RegistryConfig{TTL: 5 * time.Second, Redis: RedisConfig{Addr: r.Addr(), Poll: 50 * time.Millisecond}}
	checkLocalFollows(t, reg, "Redis")
}

// Redis down at start: the proxy starts and routes anyway, and registers
// once Redis answers; it is ready (/readyz) once registered, as on etcd.
func TestProxyStartsAndRoutesWithRedisDown(t *testing.T) {
	r := testutil.StartRedis(t, testutil.RedisOptions{})
	r.Kill()
	reg := RegistryConfig{TTL: 5 * time.Second, Redis: RedisConfig{Addr: r.Addr(), Update: time.Second}}
	p := startProxy(t, Config{Kind: KindDoubleRouter, Registry: reg})
	var atServer collector
	client := attach(t, p, &atServer)
	client.Send(envelope("2", "server-1", "m1", "x"), nil)
	testutil.CheckFor(t, wait, func() error {
		if n := atServer.count(hasID("m1")); n != 1 {
			return fmt.Errorf("server got %d casts with Redis down, want 1", n)
		}
		return nil
	})
	if p.Registered() {
		t.Error("Registered with Redis down: got true")
	}
	if err := p.ready(); err == nil {
		t.Error("ready with Redis down, not registered: want 'not registered in redis at ...'")
	}
	r.Start()
	testutil.CheckFor(t, wait, func() error {
		if !p.Registered() {
			return fmt.Errorf("not registered after Redis came back")
		}
		if err := p.ready(); err != nil {
			return fmt.Errorf("registered but not ready: %w", err)
		}
		return nil
	})
}

// A router-only central proxy registers no publisher (",<frontend>"): a
// local proxy following Redis connects to nothing for it, and to the
// publisher of a pub/sub central proxy beside it.
func TestLocalPublisherSkipsRouterOnlyCentral(t *testing.T) {
	r := testutil.StartRedis(t, testutil.RedisOptions{})
	reg := RegistryConfig{TTL: 5 * time.Second, Redis: RedisConfig{Addr: r.Addr(), Poll: 50 * time.Millisecond}}
	m := redismm.New(redismm.Config{Addr: r.Addr(), Logger: testutil.Quiet()})
	defer m.Close()
	startProxy(t, Config{Kind: KindDoubleRouter, PubSub: PubSubOff, Registry: reg})
	testutil.CheckFor(t, wait, func() error {
		if got := liveSet(t, m, redismm.PublishersKey); len(got) != 1 {
			return fmt.Errorf("PUBLISHERS: got %q, want the router-only proxy", got)
		}
		return nil
	})
	bad := &countingHandler{msg: "bad publisher address"}
	local := startProxy(t, Config{Kind: KindLocalPublisher, Registry: reg, Logger: slog.New(bad)})
	central := startProxy(t, Config{Kind: KindDoubleRouter, Registry: reg})
	var c collector
	subscriber(t, local.Addrs().Publisher, &c, "")
	client := dealer(t, "client-1", central.Addrs().Frontend, nil)
	fanoutUntil(t, client, "t", "through-pubsub-central", &c)
	if n := local.Stats(SubscriberName).Peers.Load(); n != 1 {
		t.Fatalf("local proxy has %d publisher connections, want 1 (the pub/sub central proxy only)", n)
	}
	if n := bad.n.Load(); n != 0 {
		t.Errorf("local proxy warned %d times of a bad publisher address, want 0 (a router-only proxy has none)", n)
	}
}

// A drain takes a proxy registered in Redis out of the matchmaker first:
// PUBLISHERS and ROUTERS are empty while it still routes.
func TestDrainLeavesRedisFirst(t *testing.T) {
	r := testutil.StartRedis(t, testutil.RedisOptions{})
	m := redismm.New(redismm.Config{Addr: r.Addr(), Logger: testutil.Quiet()})
	defer m.Close()
	p := startProxy(t, Config{Kind: KindDoubleRouter, Registry: RegistryConfig{TTL: 5 * time.Second, Redis: RedisConfig{Addr: r.Addr()}}})
	testutil.CheckFor(t, wait, func() error {
		if len(liveSet(t, m, redismm.RoutersKey)) != 1 {
			return fmt.Errorf("ROUTERS: %q, want the proxy", liveSet(t, m, redismm.RoutersKey))
		}
		return nil
	})
	dealer(t, "client-1", p.Addrs().Frontend, nil) // a peer, so that the drain waits
	ctx, cancel := context.WithCancel(context.Background())
	drained := make(chan DrainReport, 1)
	go func() { drained <- p.Drain(ctx, time.Minute) }()
	testutil.CheckFor(t, wait, func() error {
		if got := liveSet(t, m, redismm.PublishersKey); len(got) != 0 {
			return fmt.Errorf("PUBLISHERS during the drain: %q, want none", got)
		}
		if got := liveSet(t, m, redismm.RoutersKey); len(got) != 0 {
			return fmt.Errorf("ROUTERS during the drain: %q, want none", got)
		}
		return nil
	})
	cancel()
	if r := <-drained; !r.Deregistered {
		t.Fatalf("drain: %+v, want Deregistered", r)
	}
}
