package rpc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zmq-proxy/zmq-proxy/actors"
	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
	"github.com/zmq-proxy/zmq-proxy/registry"
	"github.com/zmq-proxy/zmq-proxy/transport"
)

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Calls return the reply or the server's failure, typed; a named server
// gets its own calls; casts each reach exactly one server.
func TestCallCast(t *testing.T) {
	for _, acks := range []bool{false, true} {
		t.Run(fmt.Sprintf("acks=%v", acks), func(t *testing.T) {
			sys := newSystem(t, 2)
			cnt := newCounter()
			s1 := sys.echoServer("demo", "s1", cnt, nil)
			sys.echoServer("demo", "s2", cnt, nil)
			c := sys.client(ClientConfig{Acks: acks})
			waitTargets(t, c, "demo", 2)
			waitLinks(t, c.links, 2)
			waitLinks(t, s1.links, 2)

			got, err := c.Call(ctxFor(t, wait), Target{Topic: "demo", Server: "s2"}, "echo", map[string]any{"value": "hello"})
			if err != nil {
				t.Fatalf("Call: %v", err)
			}
			if want := `{"server":"s2","value":"hello"}`; compact(t, got) != want {
				t.Fatalf("Call reply: got %s, want %s", got, want)
			}

			_, err = c.Call(ctxFor(t, wait), Target{Topic: "demo"}, "fail", nil)
			var re *RemoteError
			if !errors.As(err, &re) || re.Class != "ValueError" || re.Module != "builtins" || re.Message != "asked to fail" {
				t.Fatalf("Call fail: got %v, want a RemoteError ValueError/builtins/asked to fail", err)
			}
			_, err = c.Call(ctxFor(t, wait), Target{Topic: "demo"}, "nosuch", nil)
			if !errors.As(err, &re) || re.Class != "NoSuchMethod" {
				t.Fatalf("Call nosuch: got %v, want a RemoteError NoSuchMethod", err)
			}

			const n = 40
			for i := range n {
				if err := c.Cast(ctxFor(t, wait), Target{Topic: "demo"}, "echo", map[string]any{"i": i}); err != nil {
					t.Fatalf("Cast %d: %v", i, err)
				}
			}
			// 1 call to s2, 1 fail, n casts; each handled once.
			testutil.CheckFor(t, wait, func() error {
				if ids, runs := cnt.total(); ids != n+2 || runs != n+2 {
					return fmt.Errorf("handled %d ids in %d runs, want %d and %d", ids, runs, n+2, n+2)
				}
				return nil
			})
			// Round-robin over two servers: the casts split evenly.
			if a, b := cnt.server("s1"), cnt.server("s2"); a < n/2 || b < n/2 {
				t.Errorf("casts split %d/%d, want at least %d each", a, b, n/2)
			}
			if acks && c.Stats().Acks.Load() < n {
				t.Errorf("acks: got %d, want at least %d", c.Stats().Acks.Load(), n)
			}
		})
	}
}

func compact(t *testing.T, raw json.RawMessage) string {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("reply %s: %v", raw, err)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// A fanout reaches every server of the topic exactly once, and no server
// of a topic that only shares its prefix; a notification reaches every
// listener of topic.<priority>.
func TestFanoutNotify(t *testing.T) {
	sys := newSystem(t, 2)
	probes, cnt, other := newCounter(), newCounter(), newCounter()
	server := func(topic, name string, c *counter) *Server {
		return sys.echoServer(topic, name, probes, func(cfg *ServerConfig) {
			cfg.Handlers["tally"] = func(_ context.Context, m *Message) (any, error) { c.add(name, m); return nil, nil }
			cfg.Notify = func(_ context.Context, m *Message) { c.add(name, m) }
		})
	}
	servers := []*Server{server("demo", "s1", cnt), server("demo", "s2", cnt), server("demo", "s3", cnt), server("demox", "s4", other)}
	for _, s := range servers {
		testutil.CheckFor(t, wait, func() error {
			if got := s.sub.Connected(); got != 2 {
				return fmt.Errorf("%s: SUB connected to %d publishers, want 2", s.id, got)
			}
			return nil
		})
	}
	c := sys.client(ClientConfig{})
	waitLinks(t, c.links, 2)
	// A subscription travels after the connection: probe until a fanout
	// through each proxy has reached all three servers.
	testutil.CheckFor(t, wait, func() error {
		for range 2 {
			if err := c.Fanout(ctxFor(t, wait), "demo", "echo", nil); err != nil {
				return err
			}
		}
		for _, n := range []string{"s1", "s2", "s3"} {
			if probes.server(n) < 2 {
				return fmt.Errorf("%s got %d probes, want 2", n, probes.server(n))
			}
		}
		return nil
	})
	const n = 10
	for i := range n {
		if err := c.Fanout(ctxFor(t, wait), "demo", "tally", map[string]any{"i": i}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Notify(ctxFor(t, wait), "demo", "info", "thing.happened", map[string]any{"x": 1}); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, wait, func() error {
		for _, name := range []string{"s1", "s2", "s3"} {
			if got := cnt.server(name); got != n+1 {
				return fmt.Errorf("%s: %d fanouts and notifications, want %d", name, got, n+1)
			}
		}
		return nil
	})
	if ids, runs := cnt.total(); ids != n+1 || runs != 3*(n+1) {
		t.Errorf("%d ids in %d runs, want %d in %d", ids, runs, n+1, 3*(n+1))
	}
	if _, runs := other.total(); runs != 0 {
		t.Errorf("a server of topic demox handled %d messages for demo, want 0", runs)
	}
}

// The errors say what happened.
func TestErrors(t *testing.T) {
	t.Run("no proxy", func(t *testing.T) {
		sys := newSystem(t, 0)
		c := sys.client(ClientConfig{})
		if err := c.Fanout(ctxFor(t, wait), "demo", "echo", nil); !errors.Is(err, ErrNoProxy) {
			t.Fatalf("Fanout without a proxy: got %v, want ErrNoProxy", err)
		}
	})
	sys := newSystem(t, 1)
	release := make(chan struct{})
	cnt := newCounter()
	sys.echoServer("slow", "s1", cnt, func(cfg *ServerConfig) {
		cfg.Handlers["block"] = func(ctx context.Context, m *Message) (any, error) {
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil, nil
		}
	})
	defer close(release)
	c := sys.client(ClientConfig{})
	waitTargets(t, c, "slow", 1)
	if _, err := c.Call(ctxFor(t, wait), Target{Topic: "nobody"}, "echo", nil); !errors.Is(err, ErrNoServer) {
		t.Fatalf("Call to an unserved topic: got %v, want ErrNoServer", err)
	}
	if _, err := c.Call(ctxFor(t, wait), Target{Topic: "slow", Server: "s9"}, "echo", nil); !errors.Is(err, ErrNoServer) || !strings.Contains(err.Error(), "slow.s9") {
		t.Fatalf("Call to an absent server: got %v, want ErrNoServer naming slow.s9", err)
	}
	start := time.Now()
	_, err := c.Call(ctxFor(t, 300*time.Millisecond), Target{Topic: "slow"}, "block", nil)
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Call past its deadline: got %v, want ErrTimeout wrapping DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("Call returned %s after a 300 ms deadline", took)
	}
	for _, bad := range []Target{{}, {Topic: "a.b"}, {Topic: "a/b"}} {
		if _, err := c.Call(ctxFor(t, wait), bad, "echo", nil); !errors.Is(err, ErrBadTarget) {
			t.Errorf("Call to %+v: got %v, want ErrBadTarget", bad, err)
		}
	}
	if err := c.Cast(ctxFor(t, wait), Target{Topic: "slow"}, "echo", []int{1}); !errors.Is(err, ErrBadTarget) {
		t.Errorf("Cast with args that are not an object: got %v, want ErrBadTarget", err)
	}
	c.Close()
	if _, err := c.Call(ctxFor(t, wait), Target{Topic: "slow"}, "echo", nil); !errors.Is(err, ErrClosed) {
		t.Errorf("Call after Close: got %v, want ErrClosed", err)
	}
}

// With acks, a call whose proxy goes away while the server works is sent
// again at once through the other proxy; the server recognises it, the
// handler runs once, and the reply comes back by the live proxy.
func TestResendWhenProxyGoes(t *testing.T) {
	sys := newSystem(t, 2)
	started := make(chan string, 4)
	release := make(chan struct{})
	var runs sync.Map
	srv := sys.echoServer("demo", "s1", newCounter(), func(cfg *ServerConfig) {
		cfg.Handlers["block"] = func(ctx context.Context, m *Message) (any, error) {
			n, _ := runs.LoadOrStore(m.MessageID, new(int))
			*n.(*int)++
			started <- m.MessageID
			<-release
			return "done", nil
		}
	})
	c := sys.client(ClientConfig{Acks: true, AckTimeout: time.Minute}) // only the link going down can trigger the resend
	waitTargets(t, c, "demo", 1)
	waitLinks(t, c.links, 2)
	waitLinks(t, srv.links, 2)

	type result struct {
		raw json.RawMessage
		err error
	}
	done := make(chan result, 1)
	go func() {
		raw, err := c.Call(ctxFor(t, wait), Target{Topic: "demo"}, "block", nil)
		done <- result{raw, err}
	}()
	id := <-started
	// Close the proxy the call went through.
	var via *link
	testutil.CheckFor(t, wait, func() error { // the reply can outrun the send's bookkeeping
		c.mu.Lock()
		defer c.mu.Unlock()
		if via = c.pending[id].via; via == nil {
			return errors.New("the call's proxy is not set yet")
		}
		return nil
	})
	for _, p := range sys.proxies {
		if p.Addrs().Frontend == via.endpoint {
			p.Close()
		}
	}
	testutil.CheckFor(t, wait, func() error {
		if got := c.Stats().Resent.Load(); got != 1 {
			return fmt.Errorf("resent %d, want 1", got)
		}
		if got := srv.Stats().Duplicates.Load(); got != 1 {
			return fmt.Errorf("server saw %d duplicates, want 1", got)
		}
		return nil
	})
	close(release)
	r := <-done
	if r.err != nil || string(r.raw) != `"done"` {
		t.Fatalf("Call: got %s, %v; want \"done\"", r.raw, r.err)
	}
	n, _ := runs.Load(id)
	if *n.(*int) != 1 {
		t.Fatalf("handler ran %d times, want 1", *n.(*int))
	}
	if got := c.Stats().Retries.Load(); got != 0 {
		t.Errorf("retries after a timeout: got %d, want 0 (the resend came from the link going down)", got)
	}
}

// A server's Close removes its identities at once: a client sees them go
// and reports ErrNoServer, not a timeout.
func TestServerCloseDeregisters(t *testing.T) {
	sys := newSystem(t, 1)
	srv := sys.echoServer("demo", "s1", newCounter(), nil)
	c := sys.client(ClientConfig{})
	waitTargets(t, c, "demo", 1)
	waitTargets(t, c, "demo/s1", 1)
	srv.Close()
	waitTargets(t, c, "demo", 0)
	waitTargets(t, c, "demo/s1", 0)
	if _, err := c.Call(ctxFor(t, wait), Target{Topic: "demo"}, "echo", nil); !errors.Is(err, ErrNoServer) {
		t.Fatalf("Call after the only server closed: got %v, want ErrNoServer", err)
	}
}

// With acks, a message that a proxy swallows is sent again through another
// proxy after the ACK timeout; every call returns and each handler runs
// once. The swallowing proxy is a real ROUTER, registered like a proxy,
// that routes nothing.
func TestRetryAfterAckTimeout(t *testing.T) {
	sys := newSystem(t, 1)
	hole := transport.NewRouter(transport.Options{Identity: []byte("hole")})
	if err := hole.Bind("tcp://127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer hole.Close()
	reg, err := registry.NewRegistrar(registry.Config{Client: sys.cli, Logger: testutil.Quiet()},
		registry.Record{ID: "node0/hole", Kind: "double-router", Host: "node0", Frontend: hole.Addr(), Backend: hole.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	cnt := newCounter()
	sys.echoServer("demo", "s1", cnt, nil)
	c := sys.client(ClientConfig{Acks: true, AckTimeout: 50 * time.Millisecond})
	waitTargets(t, c, "demo", 1)
	waitLinks(t, c.links, 2)
	const n = 10
	for i := range n {
		if _, err := c.Call(ctxFor(t, wait), Target{Topic: "demo"}, "echo", map[string]any{"i": i}); err != nil {
			t.Fatalf("Call %d: %v", i, err)
		}
	}
	if ids, runs := cnt.total(); ids != n || runs != n {
		t.Fatalf("handler: %d ids in %d runs, want %d in %d", ids, runs, n, n)
	}
	// Round-robin sent some first attempts into the hole; each was sent
	// again, by a probe (AckTimeout/2) or a retry (AckTimeout).
	swallowed := hole.Stats().Received.Load()
	if swallowed == 0 {
		t.Fatal("the hole swallowed nothing: the test proved nothing")
	}
	if again := c.Stats().Retries.Load() + c.Stats().Probes.Load(); again < swallowed {
		t.Errorf("the hole swallowed %d messages, the client sent %d again", swallowed, again)
	}
}

// Proxies that come and go are followed without a restart: a new proxy is
// connected to and used, one that goes is dropped; a local publisher proxy
// on the server's node takes over its subscription from the central ones.
func TestFollowsProxies(t *testing.T) {
	sys := newSystem(t, 1)
	cnt := newCounter()
	srv := sys.echoServer("demo", "s1", cnt, nil)
	c := sys.client(ClientConfig{Acks: true})
	waitLinks(t, c.links, 1)
	second := sys.addProxy(actors.KindDoubleRouter, "node0")
	waitLinks(t, c.links, 2)
	waitLinks(t, srv.links, 2)
	testutil.CheckFor(t, wait, func() error {
		if got := srv.sub.Connected(); got != 2 {
			return fmt.Errorf("SUB connected to %d central publishers, want 2", got)
		}
		return nil
	})
	sys.proxies[0].Close()
	waitLinks(t, c.links, 1)
	waitLinks(t, srv.links, 1)
	if _, err := c.Call(ctxFor(t, wait), Target{Topic: "demo"}, "echo", nil); err != nil {
		t.Fatalf("Call through the new proxy: %v", err)
	}
	if got := second.Stats("frontend").Received.Load(); got == 0 {
		t.Fatal("the new proxy's frontend received nothing")
	}

	local := sys.addProxy(actors.KindLocalPublisher, "node0")
	testutil.CheckFor(t, wait, func() error {
		eps := srv.sub.Endpoints()
		if len(eps) != 1 || eps[0] != local.Addrs().Publisher {
			return fmt.Errorf("SUB endpoints %v, want only the node's local publisher %s", eps, local.Addrs().Publisher)
		}
		return nil
	})
	local.Close()
	testutil.CheckFor(t, wait, func() error {
		eps := srv.sub.Endpoints()
		if len(eps) != 1 || eps[0] != second.Addrs().Publisher {
			return fmt.Errorf("SUB endpoints %v, want the central publisher %s again", eps, second.Addrs().Publisher)
		}
		return nil
	})
}

// A proxy that leaves the registry but still runs (a draining proxy) gets
// nothing new; what still waits for its ACK through it is sent elsewhere
// at once, while a call it already acknowledged gets its reply without a
// resend; its connection stays open until the proxy closes it.
func TestRetiredProxy(t *testing.T) {
	for _, acked := range []bool{true, false} {
		t.Run(fmt.Sprintf("acked=%v", acked), func(t *testing.T) {
			sys := newSystem(t, 2)
			started := make(chan string, 4)
			release := make(chan struct{})
			srv := sys.echoServer("demo", "s1", newCounter(), func(cfg *ServerConfig) {
				cfg.testNoAcks = !acked // no ACK: the call waits for one
				cfg.Handlers["block"] = func(ctx context.Context, m *Message) (any, error) {
					started <- m.MessageID
					select {
					case <-release:
					case <-ctx.Done():
					}
					return "done", nil
				}
			})
			c := sys.client(ClientConfig{Acks: true, AckTimeout: time.Minute})
			waitTargets(t, c, "demo", 1)
			waitLinks(t, c.links, 2)
			waitLinks(t, srv.links, 2)
			done := make(chan error, 1)
			go func() {
				_, err := c.Call(ctxFor(t, wait), Target{Topic: "demo"}, "block", nil)
				done <- err
			}()
			id := <-started
			var p *pending
			var via *link
			testutil.CheckFor(t, wait, func() error { // the reply can outrun the send's bookkeeping
				c.mu.Lock()
				defer c.mu.Unlock()
				if p, via = c.pending[id], nil; p != nil {
					via = p.via
				}
				if via == nil {
					return errors.New("the call's proxy is not set yet")
				}
				return nil
			})
			if acked {
				testutil.CheckFor(t, wait, func() error {
					if !isClosed(p.acked) {
						return errors.New("the call is not acknowledged yet")
					}
					return nil
				})
			}
			if _, err := sys.cli.Delete(context.Background(), registry.Key(sys.prefix, via.proxy)); err != nil {
				t.Fatal(err)
			}
			testutil.CheckFor(t, wait, func() error {
				if !via.retired.Load() {
					return errors.New("the link is not retired yet")
				}
				return nil
			})
			if !acked {
				testutil.CheckFor(t, wait, func() error {
					if got := c.Stats().Resent.Load(); got != 1 {
						return fmt.Errorf("resent %d, want 1 (it waited for an ACK)", got)
					}
					return nil
				})
			}
			if via.d.Connected() != 1 {
				t.Fatalf("retired link: connected %d, want 1 (open for what the proxy still delivers)", via.d.Connected())
			}
			close(release)
			if err := <-done; err != nil {
				t.Fatalf("Call: %v", err)
			}
			if acked {
				if got := c.Stats().Resent.Load(); got != 0 {
					t.Fatalf("resent %d, want 0: the call was acknowledged, its reply comes without a resend", got)
				}
			}
			if acked { // (without the server's ACKs a cast would wait for one)
				before := via.d.Stats().Sent.Load()
				for range 10 {
					if err := c.Cast(ctxFor(t, wait), Target{Topic: "demo"}, "echo", nil); err != nil {
						t.Fatal(err)
					}
				}
				if got := via.d.Stats().Sent.Load(); got != before {
					t.Fatalf("the retired link sent %d more messages, want 0", got-before)
				}
			}
			for _, p := range sys.proxies {
				if p.Addrs().Frontend == via.endpoint {
					p.Close()
				}
			}
			select {
			case <-via.gone:
			case <-time.After(wait):
				t.Fatal("the retired link did not notice its proxy closing")
			}
		})
	}
}

// Close ends handlers that outlast ShutdownTimeout through their context,
// even with the queue full and a reader waiting on it.
func TestServerCloseWithStuckHandlers(t *testing.T) {
	sys := newSystem(t, 1)
	var running atomic.Int32
	srv := sys.server(ServerConfig{Topic: "stuck", Workers: 1, ShutdownTimeout: 100 * time.Millisecond,
		Handlers: map[string]Handler{"wait": func(ctx context.Context, _ *Message) (any, error) {
			running.Add(1)
			<-ctx.Done()
			return nil, ctx.Err()
		}}})
	c := sys.client(ClientConfig{})
	waitTargets(t, c, "stuck", 1)
	waitLinks(t, srv.links, 1)
	for range 10 { // one running, four queued (4×Workers), the rest hold the reader
		if err := c.Cast(ctxFor(t, wait), Target{Topic: "stuck"}, "wait", nil); err != nil {
			t.Fatal(err)
		}
	}
	testutil.CheckFor(t, wait, func() error {
		if running.Load() != 1 || srv.Stats().Received.Load() < 6 {
			return fmt.Errorf("%d running, %d received", running.Load(), srv.Stats().Received.Load())
		}
		return nil
	})
	closed := make(chan struct{})
	go func() { srv.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(DefaultShutdownTimeout / 2):
		// With 100 ms asked for, a Close that waited half the default
		// did not cancel the handlers' context after ShutdownTimeout.
		t.Fatal("Close did not end the stuck handlers after ShutdownTimeout")
	}
}

// A configuration without one registry (or with two), or with a bad
// target, is refused before anything starts.
func TestConfigRefused(t *testing.T) {
	ctx := ctxFor(t, wait)
	if _, err := NewClient(ctx, ClientConfig{}); err == nil || !strings.Contains(err.Error(), "needs a Registry") {
		t.Errorf("NewClient without a registry: got %v", err)
	}
	if _, err := NewServer(ctx, ServerConfig{Topic: "t"}); err == nil || !strings.Contains(err.Error(), "needs a Registry") {
		t.Errorf("NewServer without a registry: got %v", err)
	}
	sys := newSystem(t, 0)
	reg := registry.NewEtcd(sys.cli, registry.Options{})
	if _, err := NewServer(ctx, ServerConfig{Registry: reg, Topic: "a.b"}); !errors.Is(err, ErrBadTarget) {
		t.Errorf("NewServer on topic a.b: got %v, want ErrBadTarget", err)
	}
	if _, err := NewClient(ctx, ClientConfig{Registry: reg, Retries: -1}); err == nil {
		t.Error("NewClient with Retries -1: got nil error")
	}
}

// Casts queued just before Close still leave: Close writes what is queued
// on each connection first (a command that casts and exits relies on it).
func TestCloseWritesQueuedCasts(t *testing.T) {
	sys := newSystem(t, 1)
	cnt := newCounter()
	s1 := sys.echoServer("demo", "s1", cnt, nil)
	c := sys.client(ClientConfig{})
	waitTargets(t, c, "demo", 1)
	waitLinks(t, c.links, 1)
	waitLinks(t, s1.links, 1)
	const n = 300
	for i := range n {
		if err := c.Cast(ctxFor(t, wait), Target{Topic: "demo"}, "echo", map[string]any{"i": i}); err != nil {
			t.Fatalf("Cast %d: %v", i, err)
		}
	}
	c.Close()
	testutil.CheckFor(t, wait, func() error {
		if ids, runs := cnt.total(); ids != n || runs != n {
			return fmt.Errorf("handled %d ids in %d runs, want the %d cast before Close", ids, runs, n)
		}
		return nil
	})
}

// A panic in a handler, in Observe or in Notify is recovered and counted:
// the worker goes on, and a CALL whose handler panicked gets a failure.
func TestPanicsRecovered(t *testing.T) {
	sys := newSystem(t, 1)
	cnt := newCounter()
	srv := sys.echoServer("demo", "s1", cnt, func(cfg *ServerConfig) {
		cfg.Handlers["boom"] = func(context.Context, *Message) (any, error) { panic("handler boom") }
		cfg.Observe = func(m *Message) {
			if strings.Contains(string(m.Args), "observe-boom") {
				panic("observe boom")
			}
		}
		cfg.Notify = func(context.Context, *Message) { panic("notify boom") }
	})
	c := sys.client(ClientConfig{})
	waitTargets(t, c, "demo", 1)
	waitLinks(t, c.links, 1)
	if _, err := c.Call(ctxFor(t, wait), Target{Topic: "demo"}, "boom", nil); err == nil || !strings.Contains(err.Error(), "handler boom") {
		t.Fatalf("Call boom: got %v, want the panic as a remote failure", err)
	}
	got, err := c.Call(ctxFor(t, wait), Target{Topic: "demo"}, "echo", map[string]any{"v": "observe-boom"})
	if err != nil || !strings.Contains(string(got), "observe-boom") {
		t.Fatalf("Call echo with a panicking Observe: got %s, %v; want the echo", got, err)
	}
	note, err := encodeNotification(Notification{MessageID: "n1", EventType: "e", Priority: "INFO", Payload: json.RawMessage(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	srv.handle(job{in: inbound{typ: transport.TypeNotify, peer: "demo.info", msgID: "n1", payload: note}})
	if p := srv.Stats().Panics.Load(); p != 3 {
		t.Fatalf("Panics: got %d, want 3 (handler, Observe, Notify)", p)
	}
}

// A server registered but never answering (its identity on no proxy):
// with acks, a CAST and a CALL each end in ErrNoAck after exactly
// 1 + Retries attempts (each tried through both proxies), and the identity is
// suspect; once it deregisters, the client forgets it.
func TestNoAckAfterLastRetry(t *testing.T) {
	sys := newSystem(t, 2)
	const ghost = "node0/demo/ghost/0"
	reg, err := registry.NewTargetRegistrar(registry.Config{Client: sys.cli, Logger: testutil.Quiet()},
		registry.Target{Target: "demo", Identity: ghost, Host: "node0"})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	const retries = 2
	c := sys.client(ClientConfig{Acks: true, AckTimeout: 20 * time.Millisecond, Retries: retries})
	waitTargets(t, c, "demo", 1)
	waitLinks(t, c.links, 2)

	for i, send := range []func() error{
		func() error { return c.Cast(ctxFor(t, wait), Target{Topic: "demo"}, "echo", nil) },
		func() error { _, err := c.Call(ctxFor(t, wait), Target{Topic: "demo"}, "echo", nil); return err },
	} {
		err := send()
		if !errors.Is(err, ErrNoAck) || !strings.Contains(err.Error(), fmt.Sprintf("no ACK after %d attempts", retries+1)) {
			t.Fatalf("send %d: got %v, want ErrNoAck after %d attempts", i, err, retries+1)
		}
		// Each attempt tries both proxies (a NACK from one sends the
		// message through the other first), and probes go between.
		if got, least := c.Stats().Sent.Load(), uint64((i+1)*(retries+1)); got < least {
			t.Errorf("after send %d: sent %d, want at least %d", i, got, least)
		}
		if got, want := c.Stats().Retries.Load(), uint64((i+1)*retries); got != want {
			t.Errorf("after send %d: retries %d, want %d", i, got, want)
		}
	}
	// Each attempt went through the other proxy: both proxies saw every
	// other one, and found no route to the ghost.
	var dropped [2]uint64
	for i, p := range sys.proxies {
		dropped[i] = p.Stats(actors.BackendName).DroppedUnknownIdentity.Load()
	}
	if sent := c.Stats().Sent.Load(); dropped[0]+dropped[1] != sent || dropped[0] == 0 || dropped[1] == 0 {
		t.Errorf("messages dropped for no route at the two proxies: %v, want all %d sent, some at each", dropped, sent)
	}
	if !c.isSuspect(ghost) {
		t.Errorf("%s not suspect after missing its ACKs", ghost)
	}
	reg.Close()
	waitTargets(t, c, "demo", 0)
	testutil.CheckFor(t, wait, func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		if len(c.suspect) != 0 {
			return fmt.Errorf("suspects %v after the identity deregistered, want none", c.suspect)
		}
		return nil
	})
}

// What a broken or confused server sends a running client is dropped and
// counted, and the client goes on: a CALL addressed to it and a REPLY to a
// message it is not waiting for change nothing; a REPLY whose payload is
// not JSON ends its call with ErrMalformed; the next call is answered.
func TestMalformedRepliesToRunningClient(t *testing.T) {
	sys := newSystem(t, 1)
	const fake = "node0/demo/fake/0"
	calls := make(chan transport.Msg, 4)
	d := transport.NewDealer(transport.Options{Identity: []byte(fake), OnBatch: func(b *transport.Batch) {
		defer b.Release()
		for _, m := range b.Msgs {
			cp := make(transport.Msg, len(m))
			for i, f := range m {
				cp[i] = bytes.Clone(f)
			}
			calls <- cp
		}
	}})
	defer d.Close()
	if err := d.Connect(sys.proxies[0].Addrs().Backend); err != nil {
		t.Fatal(err)
	}
	reg, err := registry.NewTargetRegistrar(registry.Config{Client: sys.cli, Logger: testutil.Quiet()},
		registry.Target{Target: "demo", Identity: fake, Host: "node0"})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	c := sys.client(ClientConfig{})
	waitTargets(t, c, "demo", 1)
	waitLinks(t, c.links, 1)

	// reply sends [type, to the caller, message id, payload] from the fake
	// server, as a DEALER sends it through a proxy.
	reply := func(call transport.Msg, typ transport.MsgType, id, payload string) {
		if !d.Send([][]byte{nil, version10, typeFrame[typ], call[2], []byte(id), []byte(payload)}, nil) {
			t.Fatal("the fake server's send was refused")
		}
	}
	errc := make(chan error, 1)
	go func() {
		_, err := c.Call(ctxFor(t, wait), Target{Topic: "demo"}, "echo", nil)
		errc <- err
	}()
	call := <-calls
	reply(call, transport.TypeCall, string(call[4]), `[{}, {"method": "echo", "args": {}}]`) // a CALL to a client
	reply(call, transport.TypeReply, "not-waited-for", `[1, null]`)                          // a REPLY to no call
	reply(call, transport.TypeReply, string(call[4]), `[{not json`)                          // its reply, garbled
	if err := <-errc; !errors.Is(err, ErrMalformed) {
		t.Fatalf("call answered with a garbled reply: got %v, want ErrMalformed", err)
	}
	if m, l, r := c.Stats().Malformed.Load(), c.Stats().Late.Load(), c.Stats().Replies.Load(); m != 2 || l != 1 || r != 1 {
		t.Errorf("malformed %d, late %d, replies %d; want 2, 1, 1", m, l, r)
	}

	go func() {
		_, err := c.Call(ctxFor(t, wait), Target{Topic: "demo"}, "echo", nil)
		errc <- err
	}()
	call = <-calls
	reply(call, transport.TypeReply, string(call[4]), `["fine", null]`)
	if err := <-errc; err != nil {
		t.Fatalf("the next call: %v", err)
	}
}
