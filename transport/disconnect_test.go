package transport

import (
	"testing"
	"time"
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
	eventually(t, 10*time.Second, func() bool { return a.Subscribers() == 1 && b.Subscribers() == 1 }, "not connected to both publishers")
	if got := len(sub.Endpoints()); got != 2 {
		t.Fatalf("endpoints: got %d, want 2", got)
	}
	if err := sub.Disconnect(a.Addr()); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() bool { return a.Subscribers() == 0 && sub.Connected() == 1 }, "still connected to the disconnected publisher")
	// It stays away (no redial), and the other publisher still delivers.
	eventually(t, 10*time.Second, func() bool {
		b.Publish(frames("t", "x"), nil)
		time.Sleep(5 * time.Millisecond)
		return c.has("t", "x")
	}, "the remaining publisher does not deliver")
	if n := a.Subscribers(); n != 0 {
		t.Fatalf("disconnected publisher has %d subscribers, want 0", n)
	}
	if err := sub.Disconnect("tcp://127.0.0.1:1"); err != nil {
		t.Fatalf("disconnect of an unknown endpoint: %v", err)
	}
}
