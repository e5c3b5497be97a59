// Package zmqproxytest runs a whole zmq-proxy system inside a Go test, as
// nats-server's test package runs a NATS server: an embedded etcd and a
// central double-router proxy registered in it, both on random loopback
// ports, in the test's own process. A service's tests point the rpc
// package's clients and servers at it:
//
//	sys := zmqproxytest.Start(t) // closed when the test ends
//	srv, err := rpc.NewServer(ctx, rpc.ServerConfig{Registry: sys.Registry(), Topic: "demo", ...})
//	cli, err := rpc.NewClient(ctx, rpc.ClientConfig{Registry: sys.Registry()})
//
// Nothing is shared between two systems: each has its own etcd, data
// directory and ports, so tests may run in parallel. The zmq-proxy
// commands reach it with -u sys.URL().
package zmqproxytest

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/crypto/bcrypt"

	"github.com/zmq-proxy/zmq-proxy/actors"
	"github.com/zmq-proxy/zmq-proxy/internal/etcdserver"
	"github.com/zmq-proxy/zmq-proxy/registry"
)

// RegisterTimeout bounds how long New waits for the proxy's record to be
// in etcd; it is reached only when something is wrong.
const RegisterTimeout = 30 * time.Second

// Options configure a System; the zero value is a quiet system.
type Options struct {
	// Logger receives the proxy's logs and etcd's errors; nil discards
	// them.
	Logger *slog.Logger
	// Dir keeps etcd's data; "" means a new temporary directory, which
	// Close removes.
	Dir string
}

// Addrs are the addresses of the proxy's sockets, as tcp://host:port.
type Addrs struct {
	Frontend  string // clients' DEALERs connect here
	Backend   string // servers' DEALERs connect here
	Publisher string // servers' SUBs (or local publisher proxies) connect here
}

// System is a running etcd and central proxy.
type System struct {
	etcd   *etcdserver.Server
	proxy  *actors.Proxy
	cli    *clientv3.Client
	dir    string // removed by Close when New made it
	ownDir bool

	closeOnce sync.Once
	closeErr  error
}

// New starts an embedded etcd and a central proxy registered in it, on
// random loopback ports, and returns when the proxy's record is in etcd.
// On error, what was started is stopped.
func New(opts Options) (_ *System, err error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &System{dir: opts.Dir}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.dir == "" {
		if s.dir, err = os.MkdirTemp("", "zmqproxytest-"); err != nil {
			return nil, err
		}
		s.ownDir = true
	}
	if s.etcd, err = etcdserver.Start(etcdserver.Options{
		ClientAddr: "127.0.0.1:0",
		DataDir:    filepath.Join(s.dir, "etcd"),
		Logger:     logger,
		BcryptCost: bcrypt.MinCost, // a test that turns authentication on logs in fast
	}); err != nil {
		return nil, fmt.Errorf("zmqproxytest: etcd: %w", err)
	}
	if s.cli, err = registry.NewClient(registry.ClientConfig{Endpoints: s.etcd.Endpoints(), DialTimeout: RegisterTimeout}); err != nil {
		return nil, fmt.Errorf("zmqproxytest: %w", err)
	}
	if s.proxy, err = actors.New(actors.Config{
		Host:     "127.0.0.1",
		Logger:   logger,
		Registry: actors.RegistryConfig{Endpoints: s.etcd.Endpoints(), Name: "127.0.0.1"},
	}); err != nil {
		return nil, fmt.Errorf("zmqproxytest: proxy: %w", err)
	}
	deadline := time.Now().Add(RegisterTimeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !s.proxy.Registered() {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("zmqproxytest: the proxy was not registered in etcd within %s", RegisterTimeout)
		}
		<-tick.C
	}
	return s, nil
}

// Start is New for a test: it fails the test if the system does not
// start, and closes the system when the test ends. The proxy's warnings
// and errors go to the test's log.
func Start(t testing.TB) *System {
	t.Helper()
	s, err := New(Options{Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("zmqproxytest: %v", err)
		}
	})
	return s
}

// Registry is the system's etcd as a registry, for
// rpc.ClientConfig.Registry and rpc.ServerConfig.Registry.
func (s *System) Registry() registry.Registry { return registry.NewEtcd(s.cli, registry.Options{}) }

// Etcd is a client of the system's etcd, to look into it. Close closes
// it; do not close it yourself.
func (s *System) Etcd() *clientv3.Client { return s.cli }

// Endpoints are the etcd's client URLs.
func (s *System) Endpoints() []string { return s.etcd.Endpoints() }

// URL is the registry URL of the system for the zmq-proxy commands' -u:
// zmq+etcd://127.0.0.1:PORT/.
func (s *System) URL() string { return "zmq+etcd://" + s.etcd.ClientAddr() + "/" }

// Addrs are the proxy's socket addresses.
func (s *System) Addrs() Addrs {
	a := s.proxy.Addrs()
	return Addrs{Frontend: a.Frontend, Backend: a.Backend, Publisher: a.Publisher}
}

// Close stops the proxy (its record leaves etcd first), then etcd, and
// removes the data directory New made. It is safe to call twice.
func (s *System) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		if s.proxy != nil {
			errs = append(errs, s.proxy.Close())
		}
		if s.cli != nil {
			errs = append(errs, s.cli.Close())
		}
		if s.etcd != nil {
			errs = append(errs, s.etcd.Close())
		}
		if s.ownDir {
			errs = append(errs, os.RemoveAll(s.dir))
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

// testWriter writes logs to the test's log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}
