package transport

import (
	"errors"
	"testing"
	"time"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
)

// A SUB keeps one connection per endpoint however often it is asked to
// connect, and Disconnect closes that connection and stops redialling.
func TestSubConnectOncePerEndpointAndDisconnect(t *testing.T) {
	a := startPub(t, Options{})
	b := startPub(t, Options{})
	var c collector
	sub := startSub(t, Options{OnBatch: c.onBatch}, []string{""}, a.Addr(), b.Addr())
	if err := sub.Connect(a.Addr()); err != nil { // again
		t.Fatal(err)
	}
	testutil.CheckTrue(t, 10*time.Second, "not connected to both publishers", func() bool { return a.Subscribers() == 1 && b.Subscribers() == 1 })
	if got := len(sub.Endpoints()); got != 2 {
		t.Fatalf("endpoints: got %d, want 2", got)
	}
	if err := sub.Disconnect(a.Addr()); err != nil {
		t.Fatal(err)
	}
	testutil.CheckTrue(t, 10*time.Second, "still connected to the disconnected publisher", func() bool { return a.Subscribers() == 0 && sub.Connected() == 1 })
	// No dialer is left for it (so nothing redials it), and the other
	// publisher still delivers.
	if got := sub.Endpoints(); len(got) != 1 || got[0] != b.Addr() {
		t.Fatalf("endpoints after Disconnect: got %q, want [%s]", got, b.Addr())
	}
	testutil.CheckFor(t, 10*time.Second, func() error {
		b.Publish(frames("t", "x"), nil) // again each time: the subscription may not have arrived
		if !c.has("t", "x") {
			return errors.New("the remaining publisher has not delivered")
		}
		return nil
	})
	if n := a.Subscribers(); n != 0 {
		t.Fatalf("disconnected publisher has %d subscribers, want 0", n)
	}
	if err := sub.Disconnect("tcp://127.0.0.1:1"); err != nil {
		t.Fatalf("disconnect of an unknown endpoint: %v", err)
	}
}
