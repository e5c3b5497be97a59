package actors

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
	"github.com/zmq-proxy/zmq-proxy/transport"
)

// Drain deletes the record first, routes on while a peer sends, ends on
// the timeout, and Close after it is prompt.
func TestDrainDeregistersAndRoutes(t *testing.T) {
	_, cli, p := startRegistered(t, 5*time.Second)
	var atServer collector
	client := attach(t, p, &atServer)
	testutil.CheckFor(t, wait, func() error {
		if n := p.Stats(FrontendName).Peers.Load(); n != 1 { // the drain counts both
			return fmt.Errorf("%d peers on the frontend, want 1", n)
		}
		return nil
	})

	// A peer that keeps sending: the drain runs to its timeout.
	ctx, stop := context.WithCancel(context.Background())
	sent := make(chan int)
	go func() {
		n := 0
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				sent <- n
				return
			case <-tick.C:
				client.Send(envelope("2", "server-1", fmt.Sprintf("d-%d", n), "x"), nil)
				n++
			}
		}
	}()
	const timeout = 1500 * time.Millisecond
	r := p.Drain(context.Background(), timeout)
	if recs := records(t, cli); len(recs) != 0 {
		t.Errorf("records after the drain: %v, want none", recs)
	}
	testutil.CheckFor(t, wait, func() error {
		if n := atServer.count(idPrefix("d-")); n < 50 {
			return fmt.Errorf("%d casts at the server, want the casts routed during the drain", n)
		}
		return nil
	})
	stop()
	n := <-sent
	if r.Reason != DrainTimedOut || !r.Deregistered || r.PeersBefore != 2 || r.PeersAfter != 2 || r.Routed == 0 || r.Took < timeout {
		t.Errorf("drain: %+v (%d sent), want timeout, deregistered, 2 peers before and after, casts routed, at least %v", r, n, timeout)
	}
	start := time.Now()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Close after Drain took %v, want it prompt", took)
	}
}

// A drain ends early when ctx is done (a second signal), and at once with
// no peer connected.
func TestDrainEndsEarly(t *testing.T) {
	p := startProxy(t, Config{Kind: KindDoubleRouter})
	if r := p.Drain(context.Background(), time.Minute); r.Reason != DrainNoPeers || r.Deregistered || r.Took > wait {
		t.Errorf("drain without peers: %+v, want %q at once, nothing deregistered (no registry)", r, DrainNoPeers)
	}
	// A drained proxy takes no new peer: this part needs a fresh one.
	p = startProxy(t, Config{Kind: KindDoubleRouter})
	dealer(t, "client-1", p.Addrs().Frontend, nil)
	testutil.CheckFor(t, wait, func() error { // the proxy attaches it after the handshake
		if n := p.Stats(FrontendName).Peers.Load(); n != 1 {
			return fmt.Errorf("%d peers on the frontend, want 1", n)
		}
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if r := p.Drain(ctx, time.Minute); r.Reason != DrainInterrupted || r.PeersBefore != 1 {
		t.Errorf("drain with ctx done: %+v, want %q with 1 peer", r, DrainInterrupted)
	}
}

// idPrefix matches a message with a frame that starts with prefix.
func idPrefix(prefix string) func(transport.Msg) bool {
	return func(m transport.Msg) bool {
		for _, f := range m {
			if strings.HasPrefix(string(f), prefix) {
				return true
			}
		}
		return false
	}
}

// Once a drain has taken the proxy out of the registry, its sockets take
// no new connection, while the connected peers go on.
func TestDrainStopsAccepting(t *testing.T) {
	p := startProxy(t, Config{Kind: KindDoubleRouter})
	a := p.Addrs()
	var atServer collector
	client := attach(t, p, &atServer)
	ctx, cancel := context.WithCancel(context.Background())
	drained := make(chan DrainReport, 1)
	go func() { drained <- p.Drain(ctx, time.Minute) }()
	for _, ep := range []string{a.Frontend, a.Backend, a.Publisher} {
		testutil.CheckFor(t, wait, func() error {
			c, err := net.DialTimeout("tcp", strings.TrimPrefix(ep, "tcp://"), time.Second)
			if err == nil {
				c.Close()
				return fmt.Errorf("%s still accepts connections", ep)
			}
			return nil
		})
	}
	client.Send(envelope("2", "server-1", "after-close-of-listeners", "x"), nil)
	testutil.CheckFor(t, wait, func() error {
		if n := atServer.count(idPrefix("after-close-of-listeners")); n != 1 {
			return fmt.Errorf("%d casts from the connected client at the server, want 1", n)
		}
		return nil
	})
	cancel()
	if r := <-drained; r.Reason != DrainInterrupted {
		t.Errorf("drain reason %q, want %q", r.Reason, DrainInterrupted)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

// A socket actor that restarts after a drain binds its address again
// (Addrs stays) but takes no new connection.
func TestDrainedSocketRestartsWithoutAccepting(t *testing.T) {
	p := startProxy(t, Config{Kind: KindDoubleRouter,
		restart: restartPolicy{minDelay: 500 * time.Millisecond, maxDelay: 500 * time.Millisecond, maxRestarts: 10, window: time.Minute}})
	fe := strings.TrimPrefix(p.Addrs().Frontend, "tcp://")
	if r := p.Drain(context.Background(), time.Minute); r.Reason != DrainNoPeers {
		t.Fatalf("drain: %+v, want %q", r, DrainNoPeers)
	}
	p.system.Root.Send(p.system.NewLocalPID(supervisorName+"/"+FrontendName), &socketFailed{errors.New("injected failure")})
	in := p.inboxes[FrontendName]
	testutil.CheckTrue(t, wait, "the frontend actor has not failed yet", func() bool { return in.down.Load() })
	testutil.CheckFor(t, wait, func() error {
		if in.down.Load() {
			return errors.New("the frontend actor has not restarted yet")
		}
		return nil
	})
	if got := strings.TrimPrefix(p.Addrs().Frontend, "tcp://"); got != fe {
		t.Fatalf("frontend after the restart: %s, want %s", got, fe)
	}
	if c, err := net.DialTimeout("tcp", fe, time.Second); err == nil {
		c.Close()
		t.Fatal("the restarted frontend of a drained proxy accepted a connection")
	}
}
