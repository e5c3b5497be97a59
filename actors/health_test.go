package actors

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
	"github.com/zmq-proxy/zmq-proxy/transport"
)

// checkStatus waits until GET path answers want, with a body containing
// wantBody.
func checkStatus(t *testing.T, p *Proxy, path string, want int, wantBody string) {
	t.Helper()
	testutil.CheckFor(t, wait, func() error {
		code, body, err := testutil.Get(p.Addrs().Metrics, path)
		if err != nil {
			return err
		}
		if code != want || !strings.Contains(body, wantBody) {
			return fmt.Errorf("GET %s: got %d %q, want %d with %q", path, code, body, want, wantBody)
		}
		return nil
	})
}

// statusNow is GET path's status now.
func statusNow(t *testing.T, p *Proxy, path string) int {
	t.Helper()
	code, _, err := testutil.Get(p.Addrs().Metrics, path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return code
}

// During a socket actor's restart backoff the proxy is alive (/healthz
// 200) and not ready (/readyz 503, naming the socket); after the restart it
// is ready again.
func TestReadyzDuringRestartBackoff(t *testing.T) {
	p := startProxy(t, Config{Kind: KindDoubleRouter, MetricsAddr: "127.0.0.1:0",
		restart: restartPolicy{minDelay: 2 * time.Second, maxDelay: 2 * time.Second, maxRestarts: 10, window: time.Minute}})
	checkStatus(t, p, "/readyz", 200, "ok")
	checkStatus(t, p, "/healthz", 200, "ok")

	p.system.Root.Send(p.system.NewLocalPID(supervisorName+"/"+PublisherName), &socketFailed{errors.New("injected failure")})
	checkStatus(t, p, "/readyz", 503, "the publisher socket is restarting")
	if code := statusNow(t, p, "/healthz"); code != 200 {
		t.Errorf("GET /healthz during the backoff: got %d, want 200", code)
	}
	checkStatus(t, p, "/readyz", 200, "ok")
}

// Once the supervisor gives up on a socket actor, the proxy is neither
// alive nor ready, and Err reports it.
func TestHealthzAfterGiveUp(t *testing.T) {
	p := startProxy(t, Config{Kind: KindDoubleRouter, MetricsAddr: "127.0.0.1:0",
		restart: restartPolicy{minDelay: 10 * time.Millisecond, maxDelay: 10 * time.Millisecond, maxRestarts: 1, window: time.Minute}})
	checkStatus(t, p, "/healthz", 200, "ok")
	pub := p.system.NewLocalPID(supervisorName + "/" + PublisherName)
	in := p.inboxes[PublisherName]
	p.system.Root.Send(pub, &socketFailed{errors.New("injected failure 1")})
	testutil.CheckFor(t, wait, func() error {
		if in.down.Load() || p.Addrs().Publisher == "" {
			return errors.New("the publisher has not restarted after its first failure")
		}
		return nil
	})
	checkStatus(t, p, "/readyz", 200, "ok")
	p.system.Root.Send(pub, &socketFailed{errors.New("injected failure 2")})
	select {
	case err := <-p.Err():
		if !strings.Contains(err.Error(), "gave up after 1 restarts") {
			t.Errorf("Err: got %q, want it to say the supervisor gave up", err)
		}
	case <-time.After(wait):
		t.Fatal("Err reported nothing after the second failure")
	}
	checkStatus(t, p, "/healthz", 503, "failed for good")
	checkStatus(t, p, "/readyz", 503, "failed for good")
}

// A local proxy is ready only once a central publisher is connected.
func TestReadyzNeedsACentralPublisher(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	central := "tcp://" + l.Addr().String()
	l.Close() // nobody listens there yet
	p := startProxy(t, Config{Kind: KindLocalPublisher, MetricsAddr: "127.0.0.1:0", SubscribeOn: []string{central}})
	checkStatus(t, p, "/readyz", 503, "no central publisher connected")
	checkStatus(t, p, "/healthz", 200, "ok")

	pub := transport.NewPub(transport.Options{})
	if err := pub.Bind(central); err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	checkStatus(t, p, "/readyz", 200, "ok")
}

// /metrics carries client_golang's Go runtime and process collectors
// beside the proxy's own counters.
func TestMetricsHaveRuntimeAndProcess(t *testing.T) {
	p := startProxy(t, Config{Kind: KindDoubleRouter, MetricsAddr: "127.0.0.1:0"})
	m, err := testutil.Scrape(p.Addrs().Metrics)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"go_goroutines", "go_memstats_heap_inuse_bytes", "process_resident_memory_bytes",
		"process_open_fds", "process_max_fds", "zmqproxy_peers_connected"} {
		if !m.Has(name) {
			t.Errorf("/metrics has no %s", name)
		}
	}
	if v := m.Sum("process_resident_memory_bytes"); v <= 0 {
		t.Errorf("process_resident_memory_bytes: got %v, want > 0", v)
	}
	if v := m.Sum("zmqproxy_peers_connected", "socket", "frontend"); v != 0 {
		t.Errorf("zmqproxy_peers_connected{socket=frontend}: got %v, want 0", v)
	}
}
