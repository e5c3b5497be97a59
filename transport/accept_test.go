package transport

import (
	"errors"
	"testing"
	"time"
)

// A listener that breaks for good is reported once through OnError, so
// that the owning actor fails and its supervisor binds a new socket; the
// socket still closes cleanly.
func TestBrokenListenerIsReportedOnce(t *testing.T) {
	errs := make(chan error, 4)
	r := startRouter(t, Options{OnError: func(err error) { errs <- err }})
	r.s.mu.Lock()
	ln := r.s.ln
	r.s.mu.Unlock()
	ln.Close() // as if the listening socket failed under us
	select {
	case err := <-errs:
		if err == nil || errors.Is(err, ErrClosed) {
			t.Fatalf("OnError: got %v, want the accept error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a broken listener was not reported")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(errs); n != 0 {
		t.Fatalf("OnError called %d more times, want once", n)
	}
	// Closing the socket itself is not a failure.
	r2 := startRouter(t, Options{OnError: func(err error) { errs <- err }})
	r2.Close()
	if n := len(errs); n != 0 {
		t.Fatalf("Close reported as a failure: %v", <-errs)
	}
}
