package rpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/zmq-proxy/zmq-proxy/actors"
	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
	"github.com/zmq-proxy/zmq-proxy/registry"
	"github.com/zmq-proxy/zmq-proxy/transport"
)

// relay forwards TCP connections to a target and can freeze: it stops
// moving bytes either way while keeping the connections open, as a
// SIGSTOPped proxy does (its kernel still accepts what is sent), and
// thaws, delivering what it held, as the proxy does on SIGCONT.
type relay struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	thawed chan struct{} // closed while moving bytes
	conns  []net.Conn
	wg     sync.WaitGroup
}

func newRelay(t *testing.T, target string) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{ln: ln, target: strings.TrimPrefix(target, "tcp://"), thawed: make(chan struct{})}
	close(r.thawed)
	r.wg.Add(1)
	go r.accept()
	t.Cleanup(r.close)
	return r
}

func (r *relay) addr() string { return "tcp://" + r.ln.Addr().String() }

func (r *relay) accept() {
	defer r.wg.Done()
	for {
		in, err := r.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", r.target)
		if err != nil {
			in.Close()
			continue
		}
		r.mu.Lock()
		r.conns = append(r.conns, in, out)
		r.mu.Unlock()
		r.wg.Add(2)
		go r.pipe(in, out)
		go r.pipe(out, in)
	}
}

func (r *relay) pipe(from, to net.Conn) {
	defer r.wg.Done()
	defer to.Close()
	buf := make([]byte, 64<<10)
	for {
		r.mu.Lock()
		gate := r.thawed
		r.mu.Unlock()
		<-gate // frozen: read nothing more (the sender's kernel buffers fill)
		n, err := from.Read(buf)
		if n > 0 {
			r.mu.Lock()
			gate = r.thawed
			r.mu.Unlock()
			<-gate // frozen between read and write: hold what was read
			if _, werr := to.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (r *relay) freeze() {
	r.mu.Lock()
	r.thawed = make(chan struct{})
	r.mu.Unlock()
}

func (r *relay) thaw() {
	r.mu.Lock()
	select {
	case <-r.thawed:
	default:
		close(r.thawed)
	}
	r.mu.Unlock()
}

func (r *relay) close() {
	r.ln.Close()
	r.thaw()
	r.mu.Lock()
	for _, c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// relayedProxy starts a proxy that does not register itself and registers
// a record for it whose frontend and backend are relays: freezing them is
// the proxy hanging.
func (s *system) relayedProxy(t *testing.T) (fe, be *relay) {
	t.Helper()
	p, err := actors.New(actors.Config{Kind: actors.KindDoubleRouter, Host: "127.0.0.1", Logger: testutil.Quiet(),
		Registry: actors.RegistryConfig{Disabled: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	fe, be = newRelay(t, p.Addrs().Frontend), newRelay(t, p.Addrs().Backend)
	reg, err := registry.NewRegistrar(registry.Config{Client: s.cli, Logger: testutil.Quiet()},
		registry.Record{ID: "node0/relayed", Kind: "double-router", Host: "node0", Frontend: fe.addr(), Backend: be.addr()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	return fe, be
}

// A proxy that hangs (its connections open, nothing moving) is given up
// within a second by its heartbeats: what waited on it goes through the
// other proxy, every call and acked cast completes, and when the proxy
// resumes and delivers what it held, no handler runs twice. The ACK
// timeout is a minute, so only the heartbeats can explain the failover.
func TestHungProxy(t *testing.T) {
	sys := newSystem(t, 1)
	fe, be := sys.relayedProxy(t)
	cnt := newCounter()
	srv := sys.echoServer("demo", "s1", cnt, nil)
	c := sys.client(ClientConfig{Acks: true, AckTimeout: time.Minute})
	waitTargets(t, c, "demo", 1)
	waitLinks(t, c.links, 2)
	waitLinks(t, srv.links, 2)

	const freezeFor = 5 * time.Second
	stop := make(chan struct{})
	var slowest atomic.Int64 // the longest a call or cast took, in ns
	var ops, failed atomic.Int64
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				var err error
				if (w+i)%2 == 0 {
					_, err = c.Call(ctxFor(t, wait), Target{Topic: "demo"}, "echo", map[string]any{"w": w, "i": i})
				} else {
					err = c.Cast(ctxFor(t, wait), Target{Topic: "demo"}, "echo", map[string]any{"w": w, "i": i})
				}
				if err != nil {
					failed.Add(1)
					t.Errorf("op %d/%d: %v", w, i, err)
				}
				ops.Add(1)
				if d := int64(time.Since(start)); d > slowest.Load() {
					slowest.Store(d)
				}
			}
		}()
	}
	testutil.CheckFor(t, wait, func() error { // load through both proxies
		if ops.Load() < 200 {
			return fmt.Errorf("%d operations", ops.Load())
		}
		return nil
	})
	fe.freeze()
	be.freeze()
	frozenAt := time.Now()
	testutil.CheckFor(t, wait, func() error { // the hung proxy is given up
		if _, up := c.links.count(); up != 1 {
			return fmt.Errorf("%d client links up, want 1", up)
		}
		return nil
	})
	gaveUp := time.Since(frozenAt)
	for time.Since(frozenAt) < freezeFor { // load on through the other proxy
		time.Sleep(50 * time.Millisecond)
	}
	fe.thaw()
	be.thaw()
	testutil.CheckFor(t, wait, func() error {
		if _, up := c.links.count(); up != 2 {
			return fmt.Errorf("%d client links up, want 2 after the thaw", up)
		}
		return nil
	})
	close(stop)
	wg.Wait()
	ids, runs := cnt.total()
	t.Logf("%d operations, %d failed; hung link given up after %v; slowest operation %v; %d ids in %d runs; server duplicates %d; client resent %d",
		ops.Load(), failed.Load(), gaveUp, time.Duration(slowest.Load()), ids, runs, srv.Stats().Duplicates.Load(), c.Stats().Resent.Load())
	if runs != ids {
		t.Errorf("handlers ran %d times for %d messages: some twice", runs, ids)
	}
	if gaveUp > 3*time.Second {
		t.Errorf("the hung proxy's link was given up after %v, want about 1 s", gaveUp)
	}
	if s := time.Duration(slowest.Load()); s >= freezeFor {
		t.Errorf("an operation took %v: it waited for the hung proxy instead of failing over", s)
	}
	if c.Stats().Resent.Load() == 0 {
		t.Error("nothing was resent: the freeze caught no message in flight, the test proved nothing")
	}
}

// A server stopping cleanly keeps its promise: the calls it acknowledged
// are handled once, by it, and answered; the clients send it nothing new
// meanwhile (it is draining), and nothing is resent to the other server.
func TestCleanStopFinishesAcknowledged(t *testing.T) {
	sys := newSystem(t, 1)
	release := make(chan struct{})
	var mu sync.Mutex
	runs := map[string][]string{} // message id -> servers that ran it
	running := make(chan struct{}, 16)
	slow := func(name string) func(cfg *ServerConfig) {
		return func(cfg *ServerConfig) {
			cfg.Handlers["slow"] = func(ctx context.Context, m *Message) (any, error) {
				mu.Lock()
				runs[m.MessageID] = append(runs[m.MessageID], name)
				mu.Unlock()
				running <- struct{}{}
				<-release
				return name, nil
			}
		}
	}
	s1 := sys.echoServer("demo", "s1", newCounter(), slow("s1"))
	s2 := sys.echoServer("demo", "s2", newCounter(), slow("s2"))
	c := sys.client(ClientConfig{Acks: true, AckTimeout: 200 * time.Millisecond})
	waitTargets(t, c, "demo", 2)
	waitLinks(t, s1.links, 1)
	waitLinks(t, s2.links, 1)

	// Calls to s1 by name, running when it is told to stop.
	const n = 4
	errs := make(chan error, 2*n)
	for range n {
		go func() {
			got, err := c.Call(ctxFor(t, wait), Target{Topic: "demo", Server: "s1"}, "slow", nil)
			if err == nil && string(got) != `"s1"` {
				err = fmt.Errorf("reply %s from the wrong server", got)
			}
			errs <- err
		}()
	}
	for range n {
		<-running
	}
	closed := make(chan error, 1)
	go func() { closed <- s1.Shutdown(ctxFor(t, wait)) }()
	testutil.CheckFor(t, wait, func() error { // the client sees s1 draining
		if c.disc.pick("demo", nil) == s1.Identity() || c.disc.pick("demo", nil) == s1.Identity() {
			return errors.New("s1 still chosen")
		}
		if !c.disc.registered(s1.Identity()) {
			return errors.New("s1 deregistered while its handlers run")
		}
		return nil
	})
	// New calls to the topic go to s2 only, at once.
	for range n {
		go func() {
			got, err := c.Call(ctxFor(t, wait), Target{Topic: "demo"}, "slow", nil)
			if err == nil && string(got) != `"s2"` {
				err = fmt.Errorf("new call answered by %s, want s2 (s1 is draining)", got)
			}
			errs <- err
		}()
	}
	for range n {
		<-running
	}
	// Longer than the ACK timeout (and its first backoff): an
	// acknowledged call must not be resent meanwhile.
	time.Sleep(700 * time.Millisecond)
	close(release)
	for range 2 * n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if err := <-closed; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for id, by := range runs {
		if len(by) != 1 {
			t.Errorf("%s ran on %v: more than once", id, by)
		}
	}
	if len(runs) != 2*n {
		t.Errorf("%d messages handled, want %d", len(runs), 2*n)
	}
	if r := c.Stats().Resent.Load() + c.Stats().Retries.Load(); r != 0 {
		t.Errorf("%d resends: the stopping server's calls were sent again", r)
	}
}

// With one server, a call running when it stops completes with its reply
// (it used to fail with "no server" while its handler ran), and a call
// sent after the server is gone gets ErrNoServer.
func TestCleanStopOneServer(t *testing.T) {
	sys := newSystem(t, 1)
	release, running := make(chan struct{}), make(chan struct{}, 1)
	srv := sys.echoServer("demo", "s1", newCounter(), func(cfg *ServerConfig) {
		cfg.Handlers["slow"] = func(ctx context.Context, m *Message) (any, error) {
			running <- struct{}{}
			<-release
			return "done", nil
		}
	})
	c := sys.client(ClientConfig{Acks: true, AckTimeout: 100 * time.Millisecond})
	waitTargets(t, c, "demo", 1)
	done := make(chan error, 1)
	go func() {
		got, err := c.Call(ctxFor(t, wait), Target{Topic: "demo"}, "slow", nil)
		if err == nil && string(got) != `"done"` {
			err = fmt.Errorf("reply %s", got)
		}
		done <- err
	}()
	<-running
	closed := make(chan struct{})
	go func() { srv.Close(); close(closed) }()
	time.Sleep(500 * time.Millisecond) // five ACK timeouts: nothing may give up meanwhile
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("the call running at Close: %v", err)
	}
	<-closed
	waitTargets(t, c, "demo", 0)
	if _, err := c.Call(ctxFor(t, wait), Target{Topic: "demo"}, "echo", nil); !errors.Is(err, ErrNoServer) {
		t.Fatalf("after Close: got %v, want ErrNoServer", err)
	}
}

// ghost registers an identity for target that is connected nowhere (a
// server killed -9 whose lease has not expired yet).
func (s *system) ghost(t *testing.T, identity string, gen int64, targets ...string) *registry.Registrar {
	t.Helper()
	var ts []registry.Target
	for _, tg := range targets {
		ts = append(ts, registry.Target{Target: tg, Identity: identity, Host: "node0", Generation: gen})
	}
	reg, err := registry.NewTargetRegistrar(registry.Config{Client: s.cli, Logger: testutil.Quiet()}, ts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	return reg
}

// A call or acked cast sent to a registered server that is connected to no
// proxy (killed -9, its lease still running) is NACKed by the proxy and
// sent at once to the other server of the topic: it completes in far less
// than the ACK timeout (a minute here).
func TestNackResendsAtOnce(t *testing.T) {
	for _, acks := range []bool{true, false} {
		t.Run(fmt.Sprintf("acks=%v", acks), func(t *testing.T) {
			sys := newSystem(t, 1)
			const ghost = "node0/demo/dead/0b7e3a52-5555-4666-8777-988899990000"
			sys.ghost(t, ghost, 0, "demo")
			cnt := newCounter()
			sys.echoServer("demo", "s1", cnt, nil)
			c := sys.client(ClientConfig{Acks: acks, AckTimeout: time.Minute})
			waitTargets(t, c, "demo", 2)
			start := time.Now()
			const n = 20
			for i := range n {
				c.pickNext(t, "demo", ghost) // each call tries the dead server first
				if _, err := c.Call(ctxFor(t, wait), Target{Topic: "demo"}, "echo", map[string]any{"i": i}); err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
				if acks {
					c.pickNext(t, "demo", ghost)
					if err := c.Cast(ctxFor(t, wait), Target{Topic: "demo"}, "echo", map[string]any{"i": i}); err != nil {
						t.Fatalf("cast %d: %v", i, err)
					}
				}
			}
			took := time.Since(start)
			nacks := c.Stats().Nacks.Load()
			proxyNacks := sys.proxies[0].Stats(actors.FrontendName).Nacked.Load()
			t.Logf("%d calls in %v, %d NACKs (proxy sent %d)", n, took, nacks, proxyNacks)
			want := uint64(n)
			if acks {
				want = 2 * n
			}
			if nacks != want || proxyNacks != want {
				t.Fatalf("NACKs: client got %d, proxy sent %d; want %d (one per message)", nacks, proxyNacks, want)
			}
			if took > 20*time.Second {
				t.Fatalf("%d calls took %v: the NACKed ones waited", n, took)
			}
			if ids, runs := cnt.total(); ids != runs {
				t.Fatalf("%d ids in %d runs", ids, runs)
			}
		})
	}
}

// A sender that does not ask (an oslo.messaging or libzmq peer: a version
// 4 UUID as its message id) is never sent a NACK: the proxy drops its
// message to an identity not connected and says nothing. The same sender
// asking (a version 8 id with the NACK flag) gets one, naming the identity.
func TestNackOnlyWhenAsked(t *testing.T) {
	sys := newSystem(t, 1)
	got := make(chan transport.Msg, 4)
	d := transport.NewDealer(transport.Options{Identity: []byte("node1/libzmq-like"), Logger: testutil.Quiet(),
		OnBatch: func(b *transport.Batch) {
			for _, m := range b.Msgs {
				cp := make(transport.Msg, len(m))
				for i, f := range m {
					cp[i] = append([]byte(nil), f...)
				}
				got <- cp
			}
			b.Release()
		}})
	defer d.Close()
	if err := d.Connect(sys.proxies[0].Addrs().Frontend); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, wait, func() error {
		if d.Connected() != 1 {
			return errors.New("not connected")
		}
		return nil
	})
	v4, v8 := "5a3f6c1e-aaaa-4bbb-8ccc-dddddddddddd", newID(idNack)
	for _, id := range []string{v4, v8} {
		for !d.Send(head(transport.TypeCall, "node0/ghost", id), [][]byte{[]byte(`[{}, {"method": "m", "args": {}}]`)}) {
			time.Sleep(time.Millisecond)
		}
	}
	// The proxy handles one sender's messages in order: had the first
	// been NACKed, its NACK would come first.
	m := <-got
	want := []string{"", "1.0", "node0/ghost", "7", v8}
	if len(m) != len(want) {
		t.Fatalf("received %q, want %q", m, want)
	}
	for i := range want {
		if string(m[i]) != want[i] {
			t.Fatalf("received %q, want %q", m, want)
		}
	}
	// The proxy counts a NACK after it sent it: wait for the count.
	testutil.CheckFor(t, wait, func() error {
		if n, dropped := sys.proxies[0].Stats(actors.FrontendName).Nacked.Load(),
			sys.proxies[0].Stats(actors.BackendName).DroppedUnknownIdentity.Load(); n != 1 || dropped != 2 {
			return fmt.Errorf("proxy: %d NACKs, %d dropped for no route; want 1 and 2", n, dropped)
		}
		return nil
	})
}

// Of two registrations of one server (same host, topic and name), a
// client uses the newer generation only: the older one, left by a run
// killed -9, is not chosen even before its lease expires.
func TestFencedRegistration(t *testing.T) {
	sys := newSystem(t, 1)
	old := "node0/demo/s1/0b7e3a52-5555-4666-8777-988899990000"
	sys.ghost(t, old, 1, "demo", "demo/s1")
	cnt := newCounter()
	srv := sys.echoServer("demo", "s1", cnt, nil)
	c := sys.client(ClientConfig{Acks: true, AckTimeout: time.Minute})
	waitTargets(t, c, "demo/s1", 2) // both registered
	for range 20 {
		for _, tg := range []string{"demo", "demo/s1"} {
			if id := c.disc.pick(tg, nil); id != srv.Identity() {
				t.Fatalf("%s: picked %s, want the newer registration %s", tg, id, srv.Identity())
			}
		}
	}
	if c.disc.registered(old) {
		t.Fatal("the older registration counts as registered")
	}
	for i := range 10 {
		if _, err := c.Call(ctxFor(t, wait), Target{Topic: "demo", Server: "s1"}, "echo", map[string]any{"i": i}); err != nil {
			t.Fatal(err)
		}
	}
	if n := c.Stats().Nacks.Load(); n != 0 {
		t.Fatalf("%d NACKs: the older registration was used", n)
	}
}

// Every send ends: with a proxy registered but never answering and a
// context without deadline, Call, Cast, Fanout and Notify return within
// CallTimeout; a caller's cancel is context.Canceled, not ErrTimeout; after
// Close every send is ErrClosed.
func TestSendsBounded(t *testing.T) {
	sys := newSystem(t, 0)
	mute := testutil.Silent(t) // accepts, never greets
	reg, err := registry.NewRegistrar(registry.Config{Client: sys.cli, Logger: testutil.Quiet()},
		registry.Record{ID: "node0/mute", Kind: "double-router", Host: "node0", Frontend: "tcp://" + mute,
			Publisher: "tcp://" + mute})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	sys.ghost(t, "node0/demo/s1/x", 0, "demo")
	const bound = 300 * time.Millisecond
	c := sys.client(ClientConfig{CallTimeout: bound})
	waitTargets(t, c, "demo", 1)
	testutil.CheckFor(t, wait, func() error {
		if listed, _ := c.links.count(); listed != 1 {
			return errors.New("the mute proxy is not listed yet")
		}
		return nil
	})
	sends := map[string]func(context.Context) error{
		"Call":   func(ctx context.Context) error { _, err := c.Call(ctx, Target{Topic: "demo"}, "m", nil); return err },
		"Cast":   func(ctx context.Context) error { return c.Cast(ctx, Target{Topic: "demo"}, "m", nil) },
		"Fanout": func(ctx context.Context) error { return c.Fanout(ctx, "demo", "m", nil) },
		"Notify": func(ctx context.Context) error { return c.Notify(ctx, "demo", "info", "e", nil) },
	}
	for name, send := range sends {
		start := time.Now()
		err := send(context.Background())
		if took := time.Since(start); !errors.Is(err, ErrTimeout) || took > 10*bound {
			t.Errorf("%s without a deadline: %v after %v, want ErrTimeout after about %v", name, err, took, bound)
		}
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(20*time.Millisecond, cancel)
		err = send(ctx)
		if !errors.Is(err, context.Canceled) || errors.Is(err, ErrTimeout) {
			t.Errorf("%s cancelled: %v, want context.Canceled and not ErrTimeout", name, err)
		}
	}
	c.Close()
	for name, send := range sends {
		if err := send(context.Background()); !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
}

// A proxy link at its high-water mark makes a first send wait for room
// within its context (it used to return ErrBusy at once), and end with
// ErrTimeout wrapping ErrBusy when no room comes.
func TestFullWindowWaits(t *testing.T) {
	sys := newSystem(t, 0)
	fe, _ := sys.relayedProxy(t)
	sys.ghost(t, "node0/demo/s1/x", 0, "demo")
	c := sys.client(ClientConfig{HWM: 1, Heartbeat: time.Hour, HeartbeatTimeout: 2 * time.Hour})
	testutil.CheckFor(t, wait, func() error {
		if _, up := c.links.count(); up != 1 {
			return errors.New("link not up")
		}
		return nil
	})
	fe.freeze()
	big := map[string]any{"pad": strings.Repeat("x", 1<<20)}
	var err error
	for range 64 { // fill the kernel's buffers, then the one-message queue
		start := time.Now()
		err = c.Cast(ctxFor(t, 200*time.Millisecond), Target{Topic: "demo"}, "m", big)
		if err != nil {
			if took := time.Since(start); took < 150*time.Millisecond {
				t.Fatalf("a full window failed after %v, want a wait for room within the context: %v", took, err)
			}
			break
		}
	}
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, ErrBusy) {
		t.Fatalf("got %v, want ErrTimeout wrapping ErrBusy", err)
	}
	fe.thaw()
	if err := c.Cast(ctxFor(t, wait), Target{Topic: "demo"}, "m", nil); err != nil {
		t.Fatalf("after the thaw: %v", err)
	}
}

// New clients start their round-robin at random: over 40 fresh clients,
// the first pick among two servers is not always the same.
func TestFirstChoiceRandom(t *testing.T) {
	picks := map[string]int{}
	for range 40 {
		d := newDiscovery(testutil.Quiet(), func(map[string]registry.Record) {}, nil)
		for _, id := range []string{"h/t/a", "h/t/b"} {
			d.applyTarget(registry.TargetEvent{Type: registry.EventPut, Target: registry.Target{Target: "t", Identity: id}})
		}
		picks[d.pick("t", nil)]++
	}
	if len(picks) != 2 {
		t.Fatalf("first picks of 40 fresh clients: %v, want both servers", picks)
	}
	ls := make(map[uint32]bool)
	for range 40 {
		l := newLinks(transport.Options{}, testutil.Quiet(), nil, nil)
		ls[l.rr.Load()%2] = true
	}
	if len(ls) != 2 {
		t.Fatal("40 fresh clients all start their proxy round-robin at the same place")
	}
}

// A message without an id is dropped and counted; the server does not
// ACK, handle or answer it.
func TestEmptyIDRefused(t *testing.T) {
	sys := newSystem(t, 1)
	cnt := newCounter()
	srv := sys.echoServer("demo", "s1", cnt, func(cfg *ServerConfig) { cfg.Acks = true })
	srv.take(inbound{typ: transport.TypeCall, peer: "node1/c", msgID: "", payload: []byte(`[{}, {"method": "echo", "args": {}}]`)}, nil)
	if m, r := srv.Stats().Malformed.Load(), srv.Stats().Received.Load(); m != 1 || r != 0 {
		t.Fatalf("malformed %d, received %d; want 1 and 0", m, r)
	}
	if a := srv.Stats().Acks.Load(); a != 0 {
		t.Fatalf("%d ACKs sent for a message without id", a)
	}
}

// pickNext makes identity the next pick for target, and forgets every
// suspect, so that a test chooses whom a message tries first.
func (c *Client) pickNext(t *testing.T, target, identity string) {
	t.Helper()
	c.mu.Lock()
	clear(c.suspect)
	c.mu.Unlock()
	c.disc.mu.Lock()
	defer c.disc.mu.Unlock()
	ts := c.disc.targets[target]
	for i, id := range ts.live {
		if id == identity {
			ts.rr.Store(uint32(i + len(ts.live) - 1))
			return
		}
	}
	t.Fatalf("%s is not usable for %s", identity, target)
}

// A resend that finds no server is one more attempt, not an error handed
// to the caller (whose retry would be a new message): a CALL acknowledged
// by a server that then dies, with no other server registered, waits and
// goes to the server that registers next.
func TestFailedResendIsAnAttempt(t *testing.T) {
	sys := newSystem(t, 1)
	const fake = "node0/demo/fake/0b7e3a52-5555-4666-8777-988899990000"
	acked := make(chan struct{})
	var ackOnce sync.Once
	d, reg, _ := sys.fakeServer(t, fake, func(*transport.Dealer, inbound) { ackOnce.Do(func() { close(acked) }) },
		sys.proxies[0].Addrs().Backend)
	c := sys.client(ClientConfig{Acks: true, AckTimeout: 50 * time.Millisecond, Retries: 10})
	waitTargets(t, c, "demo", 1)
	done := make(chan error, 1)
	go func() {
		got, err := c.Call(ctxFor(t, wait), Target{Topic: "demo"}, "echo", map[string]any{"v": 1})
		if err == nil && !strings.Contains(string(got), `"server": "s2"`) {
			err = fmt.Errorf("reply %s, want s2's", got)
		}
		done <- err
	}()
	<-acked
	d.Close()   // the server dies after its ACK
	reg.Close() // and its registration goes
	waitTargets(t, c, "demo", 0)
	testutil.CheckFor(t, wait, func() error { // resends found no server, and were attempts
		if c.Stats().Retries.Load() < 2 {
			return fmt.Errorf("%d retries", c.Stats().Retries.Load())
		}
		return nil
	})
	select {
	case err := <-done:
		t.Fatalf("the call ended while no server was registered: %v", err)
	default:
	}
	cnt := newCounter()
	sys.echoServer("demo", "s2", cnt, nil)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if ids, runs := cnt.total(); ids != 1 || runs != 1 {
		t.Fatalf("s2: %d ids in %d runs, want 1 in 1", ids, runs)
	}
}

// A server that deregisters after acknowledging a CALL (a clean stop, its
// reply on the way) gets an ACK timeout for the reply before the call is
// sent elsewhere: a reply that comes after the deregistration ends the
// call, and the other server never sees it.
func TestAckedCallWaitsForReplyAfterDeregistration(t *testing.T) {
	sys := newSystem(t, 1)
	const fake = "node0/demo/fake/0b7e3a52-5555-4666-8777-988899990000"
	calls := make(chan inbound, 1)
	d, reg, _ := sys.fakeServer(t, fake, func(_ *transport.Dealer, in inbound) {
		select { // the first; the others are the client's probes
		case calls <- in:
		default:
		}
	}, sys.proxies[0].Addrs().Backend)
	cnt := newCounter()
	c := sys.client(ClientConfig{Acks: true, AckTimeout: 2 * time.Second})
	waitTargets(t, c, "demo", 1)
	done := make(chan error, 1)
	go func() {
		got, err := c.Call(ctxFor(t, wait), Target{Topic: "demo"}, "echo", nil)
		if err == nil && string(got) != `"late"` {
			err = fmt.Errorf("reply %s, want the first server's", got)
		}
		done <- err
	}()
	in := <-calls
	sys.echoServer("demo", "s2", cnt, nil) // another server to resend to, if the client did
	waitTargets(t, c, "demo", 2)
	reg.Close()
	waitTargets(t, c, "demo", 1) // the client has seen it go
	fakeReply(d, in, "late")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if ids, _ := cnt.total(); ids != 0 || c.Stats().Resent.Load() != 0 {
		t.Fatalf("the call was resent (%d) and reached the other server (%d ids)", c.Stats().Resent.Load(), ids)
	}
}

// With the registry down and a context without deadline, NewClient and
// NewServer fail within StartTimeout, naming the registry.
func TestStartBoundedNamesRegistry(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0") // a port with nothing behind: closed below
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	cli, err := registry.NewClient(registry.ClientConfig{Endpoints: []string{dead}, Background: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	start := time.Now()
	_, err = NewClient(context.Background(), ClientConfig{Registry: registry.NewEtcd(cli, registry.Options{}), Host: "node0", StartTimeout: 300 * time.Millisecond})
	if took := time.Since(start); err == nil || !strings.Contains(err.Error(), dead) || took > 10*time.Second {
		t.Fatalf("NewClient with etcd down: %v after %v; want an error naming %s within the bound", err, took, dead)
	}
	_, err = NewServer(context.Background(), ServerConfig{Registry: registry.NewEtcd(cli, registry.Options{}), Host: "node0", Topic: "t", StartTimeout: 300 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), dead) {
		t.Fatalf("NewServer with etcd down: %v; want an error naming %s", err, dead)
	}
}

// A server whose Host is its pod's name finds its node's local publisher
// by Node (the node name), subscribes there, and says so in its log.
func TestServerNodeFindsLocalPublisher(t *testing.T) {
	sys := newSystem(t, 1)
	local := sys.addProxy(actors.KindLocalPublisher, "node7")
	var logs testutil.SyncBuffer
	srv := sys.server(ServerConfig{Host: "pod-abc", Node: "node7", Topic: "demo",
		Logger: slog.New(slog.NewTextHandler(&logs, nil)), Handlers: map[string]Handler{}})
	testutil.CheckFor(t, wait, func() error {
		if eps := srv.sub.Endpoints(); len(eps) != 1 || eps[0] != local.Addrs().Publisher {
			return fmt.Errorf("SUB endpoints %v, want the node's local publisher %s", eps, local.Addrs().Publisher)
		}
		if !strings.Contains(logs.String(), "subscribed on the node's local publisher") ||
			!strings.Contains(logs.String(), local.Addrs().Publisher) {
			return fmt.Errorf("log %q does not say which publisher", logs.String())
		}
		return nil
	})
}

// With no Logger the library writes nothing, not even to slog's default.
func TestNilLoggerQuiet(t *testing.T) {
	sys := newSystem(t, 1)
	var logs testutil.SyncBuffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, nil)))
	defer slog.SetDefault(old)
	srv, err := NewServer(ctxFor(t, wait), ServerConfig{Registry: registry.NewEtcd(sys.cli, registry.Options{}), Host: "node0", Topic: "demo", Handlers: map[string]Handler{}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewClient(ctxFor(t, wait), ClientConfig{Registry: registry.NewEtcd(sys.cli, registry.Options{}), Host: "node0"})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	srv.Close()
	if logs.String() != "" {
		t.Fatalf("with no Logger, the library logged to slog's default:\n%s", logs.String())
	}
}

// fakeServer is a DEALER registered as a server of demo that ACKs every
// CALL and then hands it to onCall (nil: nothing more); it connects to
// the given backends only, and counts the CALLs.
func (s *system) fakeServer(t *testing.T, identity string, onCall func(*transport.Dealer, inbound), backends ...string) (*transport.Dealer, *registry.Registrar, *atomic.Int64) {
	t.Helper()
	var d *transport.Dealer
	var calls atomic.Int64
	d = transport.NewDealer(transport.Options{Identity: []byte(identity), Logger: testutil.Quiet(),
		OnBatch: func(b *transport.Batch) {
			defer b.Release()
			for _, m := range b.Msgs {
				in, err := parseDirect(m)
				if err != nil || in.typ != transport.TypeCall {
					continue
				}
				calls.Add(1)
				d.Send([][]byte{nil, version10, typeFrame[transport.TypeAck], []byte(in.peer), []byte(in.msgID)}, nil)
				if onCall != nil {
					onCall(d, in)
				}
			}
		}})
	t.Cleanup(func() { d.Close() })
	for _, be := range backends {
		if err := d.Connect(be); err != nil {
			t.Fatal(err)
		}
	}
	testutil.CheckFor(t, wait, func() error {
		if d.Connected() != len(backends) {
			return fmt.Errorf("fake server: %d of %d connections", d.Connected(), len(backends))
		}
		return nil
	})
	return d, s.ghost(t, identity, 0, "demo"), &calls
}

// fakeReply answers in through d with result.
func fakeReply(d *transport.Dealer, in inbound, result any) {
	r, _ := encodeReply(result, nil)
	d.Send([][]byte{nil, version10, typeFrame[transport.TypeReply], []byte(in.peer), []byte(in.msgID)}, [][]byte{r})
}

// A server killed -9 while it runs an acknowledged CALL stays registered
// until its lease expires; the client's probes (the call sent again every
// AckTimeout/2) are NACKed by every proxy, and the call goes to the other
// server then, not when the registration expires.
func TestProbeFindsDeadServer(t *testing.T) {
	sys := newSystem(t, 2)
	const dead = "node0/demo/dead/0b7e3a52-5555-4666-8777-988899990000"
	d, _, calls := sys.fakeServer(t, dead, nil, sys.proxies[0].Addrs().Backend, sys.proxies[1].Addrs().Backend)
	cnt := newCounter()
	sys.echoServer("demo", "s2", cnt, nil)
	c := sys.client(ClientConfig{Acks: true, AckTimeout: 400 * time.Millisecond})
	waitTargets(t, c, "demo", 2)
	waitLinks(t, c.links, 2)
	c.pickNext(t, "demo", dead)
	done := make(chan error, 1)
	go func() {
		got, err := c.Call(ctxFor(t, wait), Target{Topic: "demo"}, "echo", nil)
		if err == nil && !strings.Contains(string(got), `"s2"`) {
			err = fmt.Errorf("reply %s, want s2's", got)
		}
		done <- err
	}()
	testutil.CheckFor(t, wait, func() error { // acknowledged by the server about to die
		if calls.Load() == 0 || c.Stats().Acks.Load() == 0 {
			return errors.New("not acknowledged yet")
		}
		return nil
	})
	d.Close() // killed -9: its registration stays
	killed := time.Now()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	took := time.Since(killed)
	t.Logf("failed over %v after the kill; %d probes, %d NACKs", took, c.Stats().Probes.Load(), c.Stats().Nacks.Load())
	if took > 5*time.Second { // the lease runs on (the ghost's never expires here)
		t.Fatalf("failover took %v", took)
	}
	if n := c.Stats().Nacks.Load(); n < 2 {
		t.Fatalf("%d NACKs, want both proxies' before giving the server up", n)
	}
	if ids, runs := cnt.total(); ids != 1 || runs != 1 {
		t.Fatalf("s2: %d ids in %d runs", ids, runs)
	}
}

// A message NACKed by one proxy goes to the same server through the
// other proxy first: a server connected to one proxy only (still
// connecting to the other) gets every call, and no call moves to the
// other server of the topic.
func TestNackTriesOtherProxyFirst(t *testing.T) {
	sys := newSystem(t, 2)
	const half = "node0/demo/half/0b7e3a52-5555-4666-8777-988899990000"
	sys.fakeServer(t, half, func(d *transport.Dealer, in inbound) { fakeReply(d, in, "half") },
		sys.proxies[1].Addrs().Backend) // not on proxy 0
	cnt := newCounter()
	sys.echoServer("demo", "s2", cnt, nil)
	c := sys.client(ClientConfig{Acks: true, AckTimeout: time.Minute})
	waitTargets(t, c, "demo", 2)
	waitLinks(t, c.links, 2)
	for i := range 10 {
		c.pickNext(t, "demo", half)
		got, err := c.Call(ctxFor(t, wait), Target{Topic: "demo"}, "echo", map[string]any{"i": i})
		if err != nil || string(got) != `"half"` {
			t.Fatalf("call %d: %s, %v; want the half-connected server's reply", i, got, err)
		}
	}
	if ids, _ := cnt.total(); ids != 0 {
		t.Fatalf("%d calls moved to the other server", ids)
	}
	if n := c.Stats().Nacks.Load(); n == 0 {
		t.Fatal("no NACK: no call went through the proxy the server is not on; the test proved nothing")
	}
}

// A server whose MaxSeen is too small for its rate forgets ids before
// their TTL: it counts them (ServerStats.Evicted) and says so in its log,
// once a minute at most.
func TestEvictionCountedAndLogged(t *testing.T) {
	sys := newSystem(t, 1)
	var logs testutil.SyncBuffer
	srv := sys.echoServer("demo", "s1", newCounter(), func(cfg *ServerConfig) {
		cfg.MaxSeen = 3
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	for i := range 6 {
		srv.take(inbound{typ: transport.TypeCast, peer: "node1/c", msgID: newID(0),
			payload: []byte(fmt.Sprintf(`[{}, {"method": "echo", "args": {"i": %d}}]`, i))}, nil)
	}
	if ev := srv.Stats().Evicted.Load(); ev != 3 {
		t.Fatalf("evicted: got %d, want 3", ev)
	}
	if n := logs.Count("message ids forgotten before their TTL"); n != 1 {
		t.Fatalf("the eviction was logged %d times, want once:\n%s", n, logs.String())
	}
}

// An idle link is not watched: a hung proxy that nobody sends to costs
// nothing and is not given up (no PING goes out, so thousands of idle
// services cost a proxy nothing); the first message sent through it
// starts the watch, and the link is given up within a second.
func TestIdleLinkNotPinged(t *testing.T) {
	sys := newSystem(t, 0)
	fe, _ := sys.relayedProxy(t)
	c := sys.client(ClientConfig{})
	waitLinks(t, c.links, 1)
	l := (*c.links.all.Load())[0]
	fe.freeze()
	quiet := time.Now()
	for time.Since(quiet) < 3*DefaultHeartbeatTimeout { // idle: nothing may happen
		if !l.up.Load() {
			t.Fatal("an idle link to a hung proxy was given up: it was pinged")
		}
		time.Sleep(50 * time.Millisecond)
	}
	sys.ghost(t, "node0/demo/s1/x", 0, "demo")
	waitTargets(t, c, "demo", 1)
	sent := time.Now()
	if err := c.Cast(ctxFor(t, wait), Target{Topic: "demo"}, "m", nil); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, wait, func() error {
		if l.up.Load() {
			return errors.New("the link is still up")
		}
		return nil
	})
	if took := time.Since(sent); took > 3*time.Second {
		t.Fatalf("given up %v after the first message, want about %v", took, DefaultHeartbeatTimeout)
	}
}

// A call cancelled by its caller while it waits for the reply ends with
// context.Canceled, not ErrTimeout; one whose deadline passes ends with
// ErrTimeout wrapping context.DeadlineExceeded.
func TestCallCancelledNotTimedOut(t *testing.T) {
	sys := newSystem(t, 1)
	release := make(chan struct{})
	defer close(release)
	sys.echoServer("demo", "s1", newCounter(), func(cfg *ServerConfig) {
		cfg.Handlers["block"] = func(ctx context.Context, m *Message) (any, error) {
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil, nil
		}
	})
	for _, acks := range []bool{false, true} {
		c := sys.client(ClientConfig{Acks: acks})
		waitTargets(t, c, "demo", 1)
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		_, err := c.Call(ctx, Target{Topic: "demo"}, "block", nil)
		if !errors.Is(err, context.Canceled) || errors.Is(err, ErrTimeout) {
			t.Errorf("acks=%v, cancelled: %v; want context.Canceled, not ErrTimeout", acks, err)
		}
		_, err = c.Call(ctxFor(t, 100*time.Millisecond), Target{Topic: "demo"}, "block", nil)
		if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("acks=%v, deadline: %v; want ErrTimeout wrapping context.DeadlineExceeded", acks, err)
		}
	}
}

// rawClient is a DEALER on a proxy's frontend that sends oslo.messaging's
// frames by hand and records what comes back, by message id.
type rawClient struct {
	d    *transport.Dealer
	mu   sync.Mutex
	got  map[string][]string // message id -> types received
	last map[string]string   // message id -> the payload of the last reply
}

func newRawClient(t *testing.T, identity, frontend string) *rawClient {
	t.Helper()
	rc := &rawClient{got: map[string][]string{}, last: map[string]string{}}
	rc.d = transport.NewDealer(transport.Options{Identity: []byte(identity), Logger: testutil.Quiet(),
		OnBatch: func(b *transport.Batch) {
			defer b.Release()
			for _, m := range b.Msgs {
				if len(m) >= 5 {
					rc.mu.Lock()
					rc.got[string(m[4])] = append(rc.got[string(m[4])], string(m[3]))
					if len(m) > 5 {
						rc.last[string(m[4])] = string(m[5])
					}
					rc.mu.Unlock()
				}
			}
		}})
	t.Cleanup(func() { rc.d.Close() })
	if err := rc.d.Connect(frontend); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, wait, func() error {
		if rc.d.Connected() != 1 {
			return errors.New("raw client not connected")
		}
		return nil
	})
	return rc
}

func (rc *rawClient) call(dest, id, method string) {
	for !rc.d.Send(head(transport.TypeCall, dest, id), [][]byte{[]byte(`[{}, {"method": "` + method + `", "args": {}}]`)}) {
		time.Sleep(time.Millisecond)
	}
}

func (rc *rawClient) received(id string) []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.got[id]
}

// A stopping server takes what its senders still send until they are
// quiet: an oslo.messaging client, which knows nothing of the draining
// mark and keeps calling, is answered for a while after Shutdown began
// (at most drainMax), not dropped at once.
func TestDrainTakesWhatStillComes(t *testing.T) {
	sys := newSystem(t, 1)
	var logs testutil.SyncBuffer
	srv := sys.echoServer("demo", "s1", newCounter(), func(cfg *ServerConfig) {
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	defer func() {
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	}()
	waitLinks(t, srv.links, 1)
	rc := newRawClient(t, "node1/oslo", sys.proxies[0].Addrs().Frontend)
	type sent struct {
		id string
		at time.Time
	}
	var mu sync.Mutex
	var ids []sent
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() { // a steady stream of calls, before and during the drain
		defer close(stopped)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				id := uuid.NewString()
				rc.call(srv.Identity(), id, "echo")
				mu.Lock()
				ids = append(ids, sent{id, time.Now()})
				mu.Unlock()
			}
		}
	}()
	testutil.CheckFor(t, wait, func() error { // the stream flows
		mu.Lock()
		defer mu.Unlock()
		if len(ids) < 5 || len(rc.received(ids[0].id)) == 0 {
			return errors.New("not answered yet")
		}
		return nil
	})
	t0 := time.Now()
	srv.Shutdown(ctxFor(t, wait))
	close(stop)
	<-stopped
	answeredLate := 0
	testutil.CheckFor(t, wait, func() error {
		answeredLate = 0
		for _, s := range ids {
			if s.at.Sub(t0) >= 200*time.Millisecond && len(rc.received(s.id)) > 0 {
				answeredLate++
			}
		}
		if answeredLate == 0 {
			return fmt.Errorf("of %d calls sent during the drain, none sent 200 ms or more after Shutdown began was answered", len(ids))
		}
		return nil
	})
}

// A reply (or ACK) to a client that has gone is dropped by the proxy
// without a NACK, even when the client's id asked for NACKs: NACKs are for
// requests, and a server has no one to tell.
func TestNoNackForReplies(t *testing.T) {
	sys := newSystem(t, 1)
	release := make(chan struct{})
	running := make(chan struct{}, 1)
	srv := sys.echoServer("demo", "s1", newCounter(), func(cfg *ServerConfig) {
		cfg.Handlers["block"] = func(ctx context.Context, m *Message) (any, error) {
			running <- struct{}{}
			<-release
			return "late", nil
		}
	})
	waitLinks(t, srv.links, 1)
	rc := newRawClient(t, "node1/gone", sys.proxies[0].Addrs().Frontend)
	rc.call(srv.Identity(), newID(idAck|idNack), "block")
	<-running
	rc.d.Close() // the client goes before the reply
	testutil.CheckFor(t, wait, func() error {
		if sys.proxies[0].Stats(actors.FrontendName).Peers.Load() != 0 {
			return errors.New("the client is still connected")
		}
		return nil
	})
	close(release)
	testutil.CheckFor(t, wait, func() error { // the reply reached the proxy and was dropped
		if n := sys.proxies[0].Stats(actors.FrontendName).DroppedUnknownIdentity.Load(); n < 1 {
			return fmt.Errorf("%d dropped for no route", n)
		}
		return nil
	})
	if n := sys.proxies[0].Stats(actors.BackendName).Nacked.Load() + sys.proxies[0].Stats(actors.FrontendName).Nacked.Load(); n != 0 {
		t.Fatalf("%d NACKs for a reply", n)
	}
	if m := srv.Stats().Malformed.Load(); m != 0 {
		t.Fatalf("the server got %d malformed messages (a NACK of its reply)", m)
	}
}

// A resent CALL whose reply the server no longer keeps (MaxReplyBytes) is
// answered with a ReplyDropped failure: its handler does not run again.
func TestReplyDroppedAnswered(t *testing.T) {
	sys := newSystem(t, 1)
	cnt := newCounter()
	srv := sys.echoServer("demo", "s1", cnt, func(cfg *ServerConfig) { cfg.MaxReplyBytes = 8 })
	waitLinks(t, srv.links, 1)
	rc := newRawClient(t, "node1/oslo", sys.proxies[0].Addrs().Frontend)
	id := uuid.NewString()
	for n := 1; n <= 2; n++ {
		rc.call(srv.Identity(), id, "echo")
		testutil.CheckFor(t, wait, func() error {
			if got := rc.received(id); len(got) != n {
				return fmt.Errorf("received %v, want %d replies", got, n)
			}
			return nil
		})
	}
	rc.mu.Lock()
	last := rc.last[id]
	rc.mu.Unlock()
	if !strings.Contains(last, "ReplyDropped") {
		t.Fatalf("second reply %s, want a ReplyDropped failure", last)
	}
	if ids, runs := cnt.total(); ids != 1 || runs != 1 {
		t.Fatalf("handler: %d ids in %d runs, want 1 in 1", ids, runs)
	}
	if d := srv.Stats().RepliesDropped.Load(); d != 1 {
		t.Fatalf("RepliesDropped %d, want 1", d)
	}
}

// A handler that ignores its context cannot hold Close: after
// ShutdownTimeout its context is cancelled, a second later Close goes on
// without it and reports the deadline.
func TestShutdownHandlerIgnoringContext(t *testing.T) {
	sys := newSystem(t, 1)
	release, running := make(chan struct{}), make(chan struct{}, 1)
	defer close(release)
	srv := sys.echoServer("demo", "s1", newCounter(), func(cfg *ServerConfig) {
		cfg.ShutdownTimeout = 100 * time.Millisecond
		cfg.Handlers["deaf"] = func(context.Context, *Message) (any, error) {
			running <- struct{}{}
			<-release // ignores its context
			return nil, nil
		}
	})
	c := sys.client(ClientConfig{})
	waitTargets(t, c, "demo", 1)
	if err := c.Cast(ctxFor(t, wait), Target{Topic: "demo"}, "deaf", nil); err != nil {
		t.Fatal(err)
	}
	<-running
	start := time.Now()
	err := srv.Close()
	if took := time.Since(start); !errors.Is(err, context.DeadlineExceeded) || took > 5*time.Second {
		t.Fatalf("Close: %v after %v; want context.DeadlineExceeded after about 1.1 s", err, took)
	}
}
