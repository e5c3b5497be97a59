package main

import (
	"testing"
	"time"
)

// The window frees a place per first handler run, not per duplicate; a
// window that stays full with nothing handled is emptied after the
// timeout, so that a lost delivery does not stop the run.
func TestBenchWindow(t *testing.T) {
	tl := newTally()
	tl.window = make(chan struct{}, 2)
	stop := make(chan struct{})
	if !tl.enter(2, stop) || len(tl.window) != 2 {
		t.Fatalf("enter 2: window holds %d, want 2", len(tl.window))
	}
	id := "0b8f7c3e-5d2a-4c1b-9e7f-3a6d2c1b0e9f"
	tl.add(0, id)
	tl.add(0, id) // a duplicate frees nothing
	tl.add(1, id) // another server's first run does
	tl.add(0, "not-a-uuid")
	if len(tl.window) != 0 || tl.distinct() != 3 || tl.all.Load() != 4 {
		t.Fatalf("after 4 runs (3 first): window %d, distinct %d, all %d; want 0, 3, 4", len(tl.window), tl.distinct(), tl.all.Load())
	}
	tl.enter(2, stop)
	if tl.unstall(time.Hour) {
		t.Fatal("unstall emptied a window that has just filled")
	}
	if !tl.unstall(0) || len(tl.window) != 0 {
		t.Fatalf("unstall after the timeout: window holds %d, want 0", len(tl.window))
	}
	tl.enter(2, stop)
	close(stop)
	if tl.enter(1, stop) {
		t.Fatal("enter on a full window after stop: got true, want false")
	}
}
