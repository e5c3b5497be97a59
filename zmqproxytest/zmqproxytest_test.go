package zmqproxytest_test

import (
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/zmq-proxy/zmq-proxy/registry"
	"github.com/zmq-proxy/zmq-proxy/zmqproxytest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Two systems side by side share nothing; each proxy is registered in its
// own etcd, on loopback, and Close takes everything away.
func TestSystems(t *testing.T) {
	a, b := zmqproxytest.Start(t), zmqproxytest.Start(t)
	if a.URL() == b.URL() || a.Addrs().Frontend == b.Addrs().Frontend {
		t.Fatalf("two systems share a port: %s %s, %+v %+v", a.URL(), b.URL(), a.Addrs(), b.Addrs())
	}
	for _, s := range []*zmqproxytest.System{a, b} {
		if !strings.HasPrefix(s.URL(), "zmq+etcd://127.0.0.1:") {
			t.Errorf("URL %q, want zmq+etcd://127.0.0.1:PORT/", s.URL())
		}
		for _, addr := range []string{s.Addrs().Frontend, s.Addrs().Backend, s.Addrs().Publisher} {
			if !strings.HasPrefix(addr, "tcp://127.0.0.1:") {
				t.Errorf("socket address %q, want one on 127.0.0.1", addr)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		resp, err := s.Etcd().Get(ctx, registry.DefaultPrefix+"proxies/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		cancel()
		if err != nil || resp.Count != 1 {
			t.Errorf("records in the system's etcd: %v (%v), want 1", resp, err)
		}
	}

	s, err := zmqproxytest.New(zmqproxytest.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	front := strings.TrimPrefix(s.Addrs().Frontend, "tcp://")
	etcdAddr := strings.TrimPrefix(s.Endpoints()[0], "http://")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close twice: %v", err)
	}
	for _, addr := range []string{front, etcdAddr} {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("%s accepts connections after Close", addr)
		}
	}
}

// Close removes the data directory that New made, and only that one.
func TestDataDir(t *testing.T) {
	dir := t.TempDir()
	s, err := zmqproxytest.New(zmqproxytest.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Errorf("the caller's directory after Close: %v, want it kept", err)
	}
}
