package rpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/zmq-proxy/zmq-proxy/actors"
	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
	"github.com/zmq-proxy/zmq-proxy/registry"
	redismm "github.com/zmq-proxy/zmq-proxy/registry/redis"
)

// redisSystem is a redis-server and a proxy registered in it as
// oslo.messaging's proxy registers.
type redisSystem struct {
	redis *testutil.Redis
	mm    *redismm.Matchmaker
	proxy *actors.Proxy
}

func newRedisSystem(t *testing.T) *redisSystem {
	t.Helper()
	r := testutil.StartRedis(t, testutil.RedisOptions{})
	p, err := actors.New(actors.Config{Host: "127.0.0.1", Logger: testutil.Quiet(),
		Registry: actors.RegistryConfig{TTL: 5 * time.Second, Redis: actors.RedisConfig{Addr: r.Addr()}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	mm := redismm.New(redismm.Config{Addr: r.Addr(), Logger: testutil.Quiet()})
	t.Cleanup(func() { mm.Close() })
	testutil.CheckFor(t, wait, func() error {
		live, err := mm.LiveMembers(context.Background(), redismm.RoutersKey)
		if err != nil || len(live) != 1 {
			return fmt.Errorf("ROUTERS: %v %v, want the proxy", live, err)
		}
		return nil
	})
	return &redisSystem{redis: r, mm: mm, proxy: p}
}

// registry is the Redis matchmaker, read every 100 ms.
func (rs *redisSystem) registry() registry.Registry {
	return registry.NewRedis(rs.mm, registry.Options{Poll: 100 * time.Millisecond})
}

func (rs *redisSystem) server(t *testing.T, topic, name string, cnt *counter) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	srv, err := NewServer(ctx, ServerConfig{Registry: rs.registry(), Host: "node0",
		Topic: topic, Server: name, Logger: testutil.Quiet(), Handlers: map[string]Handler{
			"echo": func(_ context.Context, m *Message) (any, error) {
				cnt.add(name, m)
				return map[string]string{"server": name}, nil
			},
		}})
	if err != nil {
		t.Fatalf("NewServer on Redis: %v", err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

func (rs *redisSystem) client(t *testing.T, acks bool) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	c, err := NewClient(ctx, ClientConfig{Registry: rs.registry(), Host: "node0", Acks: acks, Logger: testutil.Quiet()})
	if err != nil {
		t.Fatalf("NewClient on Redis: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Go servers register DEALER/<topic> and DEALER/<topic>/<server> with
// liveness keys, as oslo.messaging's do; Go clients find the proxies in
// PUBLISHERS and the servers in those sets; Close removes the identity.
func TestRedisGoClientGoServer(t *testing.T) {
	rs := newRedisSystem(t)
	cnt := newCounter()
	srv := rs.server(t, "demo", "s1@host", cnt)
	ctx := context.Background()
	for _, key := range []string{"DEALER/demo", "DEALER/demo/s1"} {
		live, err := rs.mm.LiveMembers(ctx, key)
		if err != nil || !reflect.DeepEqual(live, []string{srv.Identity()}) {
			t.Fatalf("%s: %v %v, want [%s]", key, live, err, srv.Identity())
		}
	}
	c := rs.client(t, true)
	waitLinks(t, c.links, 1)
	waitLinks(t, srv.links, 1)
	got, err := c.Call(ctxFor(t, wait), Target{Topic: "demo", Server: "s1"}, "echo", nil)
	if err != nil || compact(t, got) != `{"server":"s1@host"}` {
		t.Fatalf("Call through Redis discovery: %s, %v", got, err)
	}
	if err := c.Cast(ctxFor(t, wait), Target{Topic: "demo"}, "echo", nil); err != nil {
		t.Fatalf("Cast: %v", err)
	}
	if _, err := c.Call(ctxFor(t, wait), Target{Topic: "nobody"}, "echo", nil); !errors.Is(err, ErrNoServer) {
		t.Fatalf("Call to nobody: got %v, want ErrNoServer", err)
	}
	srv.Close()
	for _, key := range []string{"DEALER/demo", "DEALER/demo/s1"} {
		if live, err := rs.mm.LiveMembers(ctx, key); err != nil || len(live) != 0 {
			t.Fatalf("%s after Close: %v %v, want empty", key, live, err)
		}
	}
	testutil.CheckFor(t, wait, func() error {
		if n := len(c.disc.identities("demo")); n != 0 {
			return fmt.Errorf("client still has %d identities for demo", n)
		}
		return nil
	})
}

// A Go client calls a libzmq server that oslo.messaging's way registered
// its identity in Redis; a libzmq client that reads Redis as
// oslo.messaging's does (frontend from PUBLISHERS, destination from
// DEALER/demo) calls a Go server.
func TestRedisInterop(t *testing.T) {
	needPython(t)
	rs := newRedisSystem(t)
	ctx := context.Background()

	identity := "node1/demo/py/7d2a1c3e-1111-4222-8333-944455556666"
	py := startPy(t, "server", identity, rs.proxy.Addrs().Backend, "1")
	py.next(t)
	for _, key := range []string{redismm.TopicKey("demo"), redismm.ServerKey("demo", "py")} {
		if err := rs.mm.Register(ctx, key, identity, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	c := rs.client(t, true)
	waitLinks(t, c.links, 1)
	got, err := c.Call(ctxFor(t, wait), Target{Topic: "demo", Server: "py"}, "echo", map[string]any{"value": "hi"})
	if err != nil || compact(t, got) != `{"server":"libzmq","value":"hi"}` {
		t.Fatalf("Go client -> libzmq server through Redis: %s, %v", got, err)
	}
	msgs := received(t, py.next(t))
	if want := []string{"", "1.0", c.Identity(), "1", msgs[0][4], `[{}, {"method": "echo", "args": {"value": "hi"}}]`}; !reflect.DeepEqual(msgs[0], want) {
		t.Fatalf("libzmq server got %q, want %q", msgs[0], want)
	}

	cnt := newCounter()
	srv := rs.server(t, "gosrv", "s1", cnt)
	waitLinks(t, srv.links, 1)
	msgID := "0c1d2e3f-aaaa-4bbb-8ccc-dddddddddddd"
	rurl := "redis://" + rs.redis.Addr()
	pyc := startPy(t, "client", "node1/0b7e3a52-5555-4666-8777-988899990001", rurl, rurl+"/DEALER/gosrv/s1", msgID, "echo", `{}`, "1")
	v := pyc.next(t)
	if v["timeout"] == true {
		t.Fatalf("libzmq client timed out: %v", v)
	}
	// A default server sends an oslo.messaging client without acks no ACK.
	want := [][]string{
		{"", "1.0", srv.Identity(), "5", msgID, `[{"server": "s1"}, null]`},
	}
	if got := received(t, v); !reflect.DeepEqual(got, want) {
		t.Fatalf("libzmq client -> Go server through Redis:\n got %q\nwant %q", got, want)
	}
}

// Redis restarted empty: a server writes its identity again as soon as
// Redis answers (registry/redis.Registrar's backoff, at most 1 s), and
// logs the outage once and its end once.
func TestRedisServerRegistersAgain(t *testing.T) {
	rs := newRedisSystem(t)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	var logs testutil.SyncBuffer
	srv, err := NewServer(ctx, ServerConfig{Registry: rs.registry(), Host: "node0",
		Topic: "demo", Logger: slog.New(slog.NewTextHandler(&logs, nil)), TargetTTL: 3 * time.Second, Handlers: map[string]Handler{
			"echo": func(context.Context, *Message) (any, error) { return "ok", nil },
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	rs.redis.Kill()
	testutil.CheckFor(t, wait, func() error { // the server has seen Redis go
		if srv.reg.Registered() {
			return errors.New("the server's registrar has not failed yet")
		}
		return nil
	})
	rs.redis.Start() // empty: no persistence
	testutil.CheckFor(t, wait, func() error {
		live, err := rs.mm.LiveMembers(context.Background(), "DEALER/demo")
		if err != nil || !reflect.DeepEqual(live, []string{srv.Identity()}) {
			return fmt.Errorf("DEALER/demo after the restart: %v %v, want [%s]", live, err, srv.Identity())
		}
		return nil
	})
	testutil.CheckFor(t, wait, func() error { // the log line follows the write
		if down, again := logs.Count("redis unreachable"), logs.Count("registered in redis again"); down != 1 || again != 1 {
			return fmt.Errorf("%d outage and %d recovery lines, want 1 and 1:\n%s", down, again, logs.String())
		}
		return nil
	})
}

// Redis that answers reads but refuses the registration's writes (an ACL
// without SADD): NewServer waits for the registration only as long as its
// ctx, says why it gave up, and leaves nothing running (goleak).
func TestRedisServerNotRegistered(t *testing.T) {
	rs := newRedisSystem(t)
	admin := goredis.NewClient(&goredis.Options{Addr: rs.redis.Addr(), Protocol: 2, DisableIdentity: true})
	defer admin.Close()
	if err := admin.Do(context.Background(), "ACL", "SETUSER", "default", "-sadd").Err(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	srv, err := NewServer(ctx, ServerConfig{Registry: rs.registry(), Host: "node0",
		Topic: "demo", Logger: testutil.Quiet(), Handlers: map[string]Handler{
			"echo": func(context.Context, *Message) (any, error) { return "ok", nil },
		}})
	if err == nil {
		srv.Close()
		t.Fatal("NewServer registered with SADD refused")
	}
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "not registered in redis") {
		t.Fatalf("NewServer: got %v, want 'not registered in redis' and the deadline", err)
	}
	if live, err := rs.mm.LiveMembers(context.Background(), "DEALER/demo"); err != nil || len(live) != 0 {
		t.Errorf("DEALER/demo: %v %v, want nothing", live, err)
	}
}

// A Redis that loses its data (restarted empty, flushed) lists no server
// until the servers write themselves again (within a second): meanwhile a
// client keeps the identities it knew, and every call goes on; no
// ErrNoServer for a blip of the registry.
func TestRedisWipeKeepsServers(t *testing.T) {
	rs := newRedisSystem(t)
	rs.server(t, "demo", "s1", newCounter())
	c := rs.client(t, true)
	waitLinks(t, c.links, 1)
	if _, err := c.Call(ctxFor(t, wait), Target{Topic: "demo"}, "echo", nil); err != nil {
		t.Fatal(err)
	}
	admin := goredis.NewClient(&goredis.Options{Addr: rs.redis.Addr(), Protocol: 2, DisableIdentity: true})
	defer admin.Close()
	if err := admin.FlushAll(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); time.Since(start) < 3*time.Second; {
		if _, err := c.Call(ctxFor(t, wait), Target{Topic: "demo"}, "echo", nil); err != nil {
			t.Fatalf("%v after the wipe: %v", time.Since(start).Round(time.Millisecond), err)
		}
	}
}
