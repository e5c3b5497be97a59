//go:build !noembedetcd

package etcdserver

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"
)

// TestMain fails the package on leaked goroutines. It ignores none: embed
// (v3.7.3) waits in Close for every goroutine it started, and the gRPC
// clients here are closed, so nothing of etcd, gRPC or zap outlives a test.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// quiet is a logger for tests that discards everything below error.
func quiet(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelError}))
}

// tWriter writes log lines into the test log.
type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// startRandom starts an embedded etcd on random ports in a temporary dir.
func startRandom(t *testing.T) *Server {
	t.Helper()
	s, err := Start(Options{
		ClientAddr: "127.0.0.1:0",
		DataDir:    filepath.Join(t.TempDir(), "etcd"),
		Logger:     quiet(t),
	})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// freeAddr returns a loopback address with a port that was free a moment
// ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// newClient returns a v3 client on endpoints, closed at cleanup.
func newClient(t *testing.T, endpoints []string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatalf("clientv3.New(%v): %v", endpoints, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// putGet puts key=val through endpoints and reads it back.
func putGet(t *testing.T, endpoints []string, key, val string) {
	t.Helper()
	c := newClient(t, endpoints)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Put(ctx, key, val); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	mustGet(t, c, key, val)
}

// mustGet fails the test unless key holds want.
func mustGet(t *testing.T, c *clientv3.Client, key, want string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Get(ctx, key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != want {
		t.Fatalf("get %s: got %v, want %q", key, resp.Kvs, want)
	}
}

func TestStartPutGet(t *testing.T) {
	s := startRandom(t)
	eps := s.Endpoints()
	if len(eps) != 1 || eps[0] != "http://"+s.ClientAddr() {
		t.Fatalf("Endpoints: got %v, want [http://%s]", eps, s.ClientAddr())
	}
	if s.ClientAddr() == s.PeerAddr() {
		t.Fatalf("client and peer on the same address %s", s.ClientAddr())
	}
	putGet(t, eps, "/zmq-proxy/test", "v1")
}

func TestCloseTwice(t *testing.T) {
	s := startRandom(t)
	if err := s.Close(); err != nil {
		t.Fatalf("first Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := Probe(context.Background(), s.ClientAddr()); !errors.Is(err, ErrNothingListening) {
		t.Fatalf("Probe after Close: got %v, want %v", err, ErrNothingListening)
	}
	if _, ok := <-s.Err(); ok {
		t.Fatal("Err channel not closed after Close")
	}
}

func TestRestartKeepsData(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etcd")
	s, err := Start(Options{ClientAddr: "127.0.0.1:0", DataDir: dir, Logger: quiet(t)})
	if err != nil {
		t.Fatal(err)
	}
	putGet(t, s.Endpoints(), "k", "kept")
	s.Close()

	s2, err := Start(Options{ClientAddr: s.ClientAddr(), PeerAddr: s.PeerAddr(), DataDir: dir, Logger: quiet(t)})
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	defer s2.Close()
	mustGet(t, newClient(t, s2.Endpoints()), "k", "kept")
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want error
	}{
		{"defaults", Options{DataDir: "d"}, nil},
		{"random", Options{ClientAddr: "127.0.0.1:0", DataDir: "d"}, nil},
		{"ipv6 loopback", Options{ClientAddr: "[::1]:0", PeerAddr: "[::1]:0", DataDir: "d"}, nil},
		{"localhost", Options{ClientAddr: "localhost:0", DataDir: "d"}, nil},
		{"no data dir", Options{}, ErrNoDataDir},
		{"not loopback", Options{ClientAddr: "0.0.0.0:2379", DataDir: "d"}, ErrNotLoopback},
		{"peer not loopback", Options{PeerAddr: "10.1.2.3:2380", DataDir: "d"}, ErrNotLoopback},
		{"no port", Options{ClientAddr: "127.0.0.1", DataDir: "d"}, ErrBadAddr},
		{"bad port", Options{ClientAddr: "127.0.0.1:http", DataDir: "d"}, ErrBadAddr},
		{"same port", Options{ClientAddr: "127.0.0.1:2380", PeerAddr: "127.0.0.1:2380", DataDir: "d"}, ErrBadAddr},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.opts.Validate()
			if tt.want == nil && err != nil || !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestStartWithoutDataDir(t *testing.T) {
	if _, err := Start(Options{ClientAddr: "127.0.0.1:0"}); !errors.Is(err, ErrNoDataDir) {
		t.Fatalf("got %v, want %v", err, ErrNoDataDir)
	}
}

func TestStartPortTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = Start(Options{ClientAddr: l.Addr().String(), PeerAddr: "127.0.0.1:0", DataDir: t.TempDir(), Logger: quiet(t)})
	if !errors.Is(err, ErrPortInUse) {
		t.Fatalf("got %v, want %v", err, ErrPortInUse)
	}
}

// garbageServer accepts connections, writes junk and closes them.
func garbageServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write(bytes.Repeat([]byte("garbage\x00\xff"), 100))
			c.Close()
		}
	})
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	return l.Addr().String()
}

// httpServer starts an HTTP/1 server answering 404 and returns its host:port.
func httpServer(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

func TestProbe(t *testing.T) {
	etcd := startRandom(t)
	tests := []struct {
		name string
		addr string
		want error
	}{
		{"nothing listening", freeAddr(t), ErrNothingListening},
		{"etcd", etcd.ClientAddr(), nil},
		{"etcd with scheme", etcd.Endpoints()[0], nil},
		{"http server", httpServer(t), ErrNotEtcd},
		{"garbage", garbageServer(t), ErrNotEtcd},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			start := time.Now()
			err := Probe(ctx, tt.addr)
			if tt.want == nil && err != nil || !errors.Is(err, tt.want) {
				t.Fatalf("Probe(%s): got %v, want %v", tt.addr, err, tt.want)
			}
			// Only a silent peer should make Probe wait for its deadline.
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("Probe(%s) took %s", tt.addr, d)
			}
		})
	}
}

func TestProbeSilentServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close() // never accepted: the kernel completes the handshake, nobody speaks
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := Probe(ctx, l.Addr().String()); !errors.Is(err, ErrNotEtcd) {
		t.Fatalf("got %v, want %v", err, ErrNotEtcd)
	}
}

func TestProbeCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Probe(ctx, freeAddr(t)); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want %v", err, context.Canceled)
	}
}

// recorder is a slog handler that keeps the messages it is given.
type recorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *recorder) WithGroup(string) slog.Handler            { return r }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if rec.Level >= slog.LevelInfo && rec.Message != "embedded etcd" {
		r.msgs = append(r.msgs, rec.Message)
	}
	return nil
}

func (r *recorder) messages() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.msgs...)
}

func TestLocalStarts(t *testing.T) {
	rec := &recorder{}
	addr := freeAddr(t)
	eps, srv, err := Local(context.Background(), Options{
		ClientAddr: addr,
		PeerAddr:   "127.0.0.1:0",
		DataDir:    filepath.Join(t.TempDir(), "etcd"),
		Logger:     slog.New(rec),
	})
	if err != nil {
		t.Fatalf("Local: %v", err)
	}
	if srv == nil {
		t.Fatal("Local: got no server, want one started")
	}
	defer srv.Close()
	checkLocal(t, eps, "http://"+addr, rec, "started embedded etcd")
}

// checkLocal checks that Local gave the one endpoint want, logged the one
// line wantLog, and that the etcd there works.
func checkLocal(t *testing.T, eps []string, want string, rec *recorder, wantLog string) {
	t.Helper()
	if len(eps) != 1 || eps[0] != want {
		t.Fatalf("endpoints: got %v, want [%s]", eps, want)
	}
	if got := rec.messages(); len(got) != 1 || got[0] != wantLog {
		t.Fatalf("logs: got %q, want [%s]", got, wantLog)
	}
	putGet(t, eps, "k", "v")
}

func TestLocalReuses(t *testing.T) {
	running := startRandom(t)
	rec := &recorder{}
	eps, srv, err := Local(context.Background(), Options{
		ClientAddr: running.ClientAddr(),
		PeerAddr:   "127.0.0.1:0",
		DataDir:    filepath.Join(t.TempDir(), "unused"),
		Logger:     slog.New(rec),
	})
	if err != nil {
		t.Fatalf("Local: %v", err)
	}
	if srv != nil {
		srv.Close()
		t.Fatal("Local started an etcd, want the running one reused")
	}
	checkLocal(t, eps, running.Endpoints()[0], rec, "using etcd")
}

func TestLocalNotEtcd(t *testing.T) {
	addr := httpServer(t)
	_, srv, err := Local(context.Background(), Options{
		ClientAddr: addr,
		PeerAddr:   "127.0.0.1:0",
		DataDir:    filepath.Join(t.TempDir(), "etcd"),
		Logger:     quiet(t),
	})
	if srv != nil {
		srv.Close()
		t.Fatal("Local started an etcd on a port held by an HTTP server")
	}
	if !errors.Is(err, ErrNotEtcd) || !errors.Is(err, ErrPortInUse) {
		t.Fatalf("got %v, want %v and %v", err, ErrNotEtcd, ErrPortInUse)
	}
	msg := err.Error()
	want := addr + " is in use by something that is not etcd: stop it, or give an etcd with -u zmq+etcd://host:port/"
	if !strings.HasPrefix(msg, want) || strings.Contains(msg, "\n") {
		t.Fatalf("got %q, want one line starting %q", msg, want)
	}
}

func TestLocalRandomPort(t *testing.T) {
	eps, srv, err := Local(context.Background(), Options{
		ClientAddr: "127.0.0.1:0",
		DataDir:    filepath.Join(t.TempDir(), "etcd"),
		Logger:     quiet(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if _, port, _ := net.SplitHostPort(srv.ClientAddr()); port == "0" {
		t.Fatalf("client address %s: want the bound port", srv.ClientAddr())
	}
	putGet(t, eps, "k", "v")
}

// Two daemons started at once on one node race to start the embedded etcd
// on the same ports and data dir: one starts it, the other uses it.
func TestLocalRace(t *testing.T) {
	const n = 2
	opts := Options{
		ClientAddr: freeAddr(t),
		PeerAddr:   freeAddr(t),
		DataDir:    filepath.Join(t.TempDir(), "etcd"),
		Logger:     quiet(t),
	}
	var (
		wg   sync.WaitGroup
		eps  [n][]string
		srvs [n]*Server
		errs [n]error
	)
	for i := range n {
		wg.Go(func() { eps[i], srvs[i], errs[i] = Local(context.Background(), opts) })
	}
	wg.Wait()
	started := 0
	for i := range n {
		if srvs[i] != nil {
			started++
			defer srvs[i].Close()
		}
	}
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Local %d: %v", i, errs[i])
		}
		if want := "http://" + opts.ClientAddr; len(eps[i]) != 1 || eps[i][0] != want {
			t.Fatalf("Local %d endpoints: got %v, want [%s]", i, eps[i], want)
		}
		putGet(t, eps[i], "k"+strconv.Itoa(i), "v")
	}
	if started != 1 {
		t.Fatalf("started %d embedded etcds, want 1", started)
	}
}

// Clients of other processes hold watches and lease keep-alives open;
// Close ends them instead of waiting etcd's request timeout (7 s) for them.
func TestCloseDoesNotWaitForOpenStreams(t *testing.T) {
	s := startRandom(t)
	cli, err := clientv3.New(clientv3.Config{Endpoints: s.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wch := cli.Watch(ctx, "/x", clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	<-wch // the watch stream is open
	g, err := cli.Grant(ctx, 5)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.KeepAlive(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	s.Close()
	// etcd's own timeout is 5 s plus two election timeouts; anything well
	// under it shows the streams were ended, not waited for.
	if took := time.Since(start); took >= 5*time.Second {
		t.Fatalf("Close with open streams took %s, want well under etcd's 7 s request timeout", took)
	} else {
		t.Logf("Close with a watch and a keep-alive open took %s", took.Round(time.Millisecond))
	}
}

func TestPeerPortFollowsClientPort(t *testing.T) {
	for _, tt := range []struct{ client, wantPeer string }{
		{"", "127.0.0.1:2380"},
		{"127.0.0.1:2379", "127.0.0.1:2380"},
		{"127.0.0.1:12379", "127.0.0.1:12380"},
		{"127.0.0.1:0", "127.0.0.1:0"},
	} {
		if got := (Options{ClientAddr: tt.client}).withDefaults().PeerAddr; got != tt.wantPeer {
			t.Errorf("peer address for client %q: got %s, want %s", tt.client, got, tt.wantPeer)
		}
	}
}
