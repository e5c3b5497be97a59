package transport

import (
	"testing"
	"time"
)

func TestLogLimit(t *testing.T) {
	var l LogLimit
	t0 := time.Unix(1000, 0)
	for _, c := range []struct {
		at   time.Duration
		want bool
	}{{0, true}, {time.Second, false}, {logWarnEvery - time.Nanosecond, false}, {logWarnEvery, true}, {logWarnEvery + time.Second, false}} {
		if got := l.Allow(t0.Add(c.at)); got != c.want {
			t.Errorf("Allow at +%s: got %v, want %v", c.at, got, c.want)
		}
	}
}

func TestConnLimit(t *testing.T) {
	l := NewConnLimit(2)
	if !l.acquire() || !l.acquire() {
		t.Fatal("the first two acquires: got refused, want granted")
	}
	if l.acquire() {
		t.Fatal("a third acquire at a limit of 2: got granted, want refused")
	}
	l.release()
	if !l.acquire() {
		t.Fatal("an acquire after a release: got refused, want granted")
	}
	var none *ConnLimit
	if !none.acquire() {
		t.Fatal("a nil limit: got refused, want no limit")
	}
	if n := DefaultMaxConnections(); n < 1 {
		t.Fatalf("DefaultMaxConnections: got %d, want at least 1", n)
	}
}
