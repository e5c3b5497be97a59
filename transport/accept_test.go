package transport

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
)

// dialRefused reports nil once a TCP dial to the socket's address is
// refused by the kernel (nothing listens there any more).
func dialRefused(addr string) error {
	c, err := net.DialTimeout("tcp", strings.TrimPrefix(addr, "tcp://"), time.Second)
	if err == nil {
		c.Close()
		return errors.New("a dial connected")
	}
	return nil
}

// StopAccepting on a bound ROUTER: the connected peer goes on, new
// connections are refused.
func TestStopAcceptingKeepsPeers(t *testing.T) {
	var got collector
	r := startRouter(t, Options{OnBatch: got.onBatch})
	d := startDealer(t, Options{Identity: []byte("d1")}, r.Addr())
	testutil.CheckFor(t, wait, func() error {
		// Both ends: each attaches after its own side of the handshake.
		if n, c := r.Stats().Peers.Load(), d.Connected(); n != 1 || c != 1 {
			return fmt.Errorf("%d peers, dealer connected to %d; want 1 and 1", n, c)
		}
		return nil
	})
	r.StopAccepting()
	if err := dialRefused(r.Addr()); err != nil {
		t.Fatalf("after StopAccepting: %v, want the dial refused", err)
	}
	if !d.Send(frames("", "after"), nil) {
		t.Fatal("the connected dealer's send was refused")
	}
	testutil.CheckTrue(t, wait, "the connected peer's message did not arrive", func() bool { return got.has("", "after") })
	if n := r.Stats().Peers.Load(); n != 1 {
		t.Errorf("%d peers after StopAccepting, want the 1 connected before", n)
	}
}

// StopAccepting before Bind (a drained proxy's socket restarting): Bind
// succeeds and reports its address, and accepts nothing.
func TestStopAcceptingBeforeBind(t *testing.T) {
	r := NewRouter(testOptions(Options{}))
	t.Cleanup(func() { r.Close() })
	r.StopAccepting()
	if err := r.Bind(anyPort); err != nil {
		t.Fatalf("Bind after StopAccepting: %v", err)
	}
	if r.Addr() == "" {
		t.Fatal("Bind after StopAccepting reports no address")
	}
	if err := dialRefused(r.Addr()); err != nil {
		t.Fatalf("%v, want the dial refused", err)
	}
}
