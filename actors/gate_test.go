package actors

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
)

// A shut gate starts nothing, and a timer pending when it shuts never
// fires.
func TestGateShutStopsPendingWork(t *testing.T) {
	var g gate
	var fired atomic.Int32
	if !g.afterFunc(time.Hour, func() { fired.Add(1) }) {
		t.Fatal("afterFunc on an open gate: got false, want true")
	}
	ran := make(chan struct{})
	if !g.start(func() { close(ran) }) {
		t.Fatal("start on an open gate: got false, want true")
	}
	<-ran
	if !g.afterFunc(0, func() { fired.Add(1) }) {
		t.Fatal("afterFunc(0) on an open gate: got false, want true")
	}
	testutil.CheckFor(t, wait, func() error {
		if n := fired.Load(); n != 1 {
			return fmt.Errorf("timers fired: got %d, want 1 (the one due now)", n)
		}
		return nil
	})
	g.close()
	g.wait()
	if g.afterFunc(0, func() { fired.Add(1) }) || g.start(func() { fired.Add(1) }) {
		t.Fatal("afterFunc or start on a shut gate: got true, want false")
	}
	if len(g.timers) != 0 {
		t.Fatalf("timers left after close: got %d, want 0", len(g.timers))
	}
	if n := fired.Load(); n != 1 {
		t.Fatalf("timers fired after close: got %d, want still 1", n)
	}
}

// Err's channel is closed when Close has finished.
func TestErrClosedByClose(t *testing.T) {
	p := startProxy(t, Config{Kind: KindDoubleRouter})
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err, ok := <-p.Err():
		if ok {
			t.Fatalf("Err after Close: got %v, want a closed channel", err)
		}
	case <-time.After(wait):
		t.Fatal("Err's channel still open after Close")
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// A New that fails after it connected to etcd releases everything (the
// etcd client included): goleak in TestMain fails the package otherwise.
func TestNewFailureWithRegistryReleasesAll(t *testing.T) {
	etcd := testutil.Embedded(t)
	ln := testutil.Taken(t)
	port := ln.Addr().(*net.TCPAddr).Port
	_, err := New(Config{Host: "127.0.0.1", FrontendPort: port, Logger: testutil.Quiet(),
		Registry: RegistryConfig{Endpoints: etcd.Endpoints()}})
	if err == nil || !strings.Contains(err.Error(), "bind frontend") {
		t.Fatalf("New on a taken port: got %v, want the bind error", err)
	}
	if errors.Is(err, ErrConfig) {
		t.Fatalf("New on a taken port: got a configuration error %v", err)
	}
}
