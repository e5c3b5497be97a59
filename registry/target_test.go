package registry

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
)

// targetLog runs a TargetWatcher and keeps the live set.
type targetLog struct {
	mu   sync.Mutex
	live map[string]Target // key -> target
	puts int
	dels int
}

func watchTargets(t *testing.T, w *TargetWatcher) *targetLog {
	l := &targetLog{live: make(map[string]Target)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = w.Run(ctx, func(ev TargetEvent) {
			l.mu.Lock()
			defer l.mu.Unlock()
			k := ev.Target.Target + " " + ev.Target.Identity
			if ev.Type == EventPut {
				l.puts++
				l.live[k] = ev.Target
			} else {
				l.dels++
				delete(l.live, k)
			}
		}, nil)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return l
}

func (l *targetLog) state() (live, puts, dels int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.live), l.puts, l.dels
}

// A server's targets appear together under one lease and vanish together
// on Close; the watcher reports each exactly once.
func TestTargetRegistrar(t *testing.T) {
	etcd := testutil.Embedded(t)
	cli := newClient(t, etcd.Endpoints())
	l := watchTargets(t, NewTargetWatcher(cli, "", testutil.Quiet()))

	id := "h1/demo/s1/6f1c"
	r, err := NewTargetRegistrar(Config{Client: cli, Logger: testutil.Quiet()},
		Target{Target: "demo", Identity: id, Host: "h1"},
		Target{Target: "demo/s1", Identity: id, Host: "h1"})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.Ready():
	case <-time.After(wait):
		t.Fatal("Ready not closed")
	}
	if !r.Registered() {
		t.Fatal("Ready closed but Registered is false")
	}
	testutil.CheckFor(t, wait, func() error {
		if live, puts, _ := l.state(); live != 2 || puts != 2 {
			return fmt.Errorf("watcher: %d live after %d puts, want 2 and 2", live, puts)
		}
		return nil
	})
	resp, err := cli.Get(context.Background(), TargetKey("", "demo/s1", id))
	if err != nil || len(resp.Kvs) != 1 || resp.Kvs[0].Lease == 0 {
		t.Fatalf("demo/s1 key: %v %v, want one key on a lease", resp, err)
	}
	if err := r.Update(record("x")); !errors.Is(err, ErrBadRecord) {
		t.Errorf("Update of targets: got %v, want ErrBadRecord", err)
	}
	r.Close()
	testutil.CheckFor(t, wait, func() error {
		if live, _, dels := l.state(); live != 0 || dels != 2 {
			return fmt.Errorf("after Close: %d live after %d deletes, want 0 and 2", live, dels)
		}
		return nil
	})
}

func TestTargetValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		tg   Target
		ok   bool
	}{
		{"topic", Target{Target: "demo", Identity: "i"}, true},
		{"topic/server", Target{Target: "demo/s1", Identity: "i"}, true},
		{"empty", Target{Identity: "i"}, false},
		{"three parts", Target{Target: "a/b/c", Identity: "i"}, false},
		{"leading slash", Target{Target: "/a", Identity: "i"}, false},
		{"no identity", Target{Target: "demo"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.tg.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate(%+v): got %v, want ok=%v", tc.tg, err, tc.ok)
			}
		})
	}
	if _, err := NewTargetRegistrar(Config{Client: nil}); err == nil {
		t.Fatal("NewTargetRegistrar without a client: got nil error")
	}
}

// An identity with a slash in it (they all have) round-trips through its
// key: the key's parts are escaped, the value carries the truth.
func TestTargetKeyEscapes(t *testing.T) {
	got := TargetKey("/p/", "demo/s1", "h/demo/s1/u")
	if want := "/p/targets/demo%2Fs1/h%2Fdemo%2Fs1%2Fu"; got != want {
		t.Fatalf("TargetKey: got %q, want %q", got, want)
	}
}
