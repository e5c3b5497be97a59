package rpc

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/zmq-proxy/zmq-proxy/actors"
	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
	"github.com/zmq-proxy/zmq-proxy/transport/security"
)

// Clients and servers speak CURVE to a CURVE proxy: calls and fanouts go
// through; a client without the proxy's key never gets a connection.
func TestCurve(t *testing.T) {
	proxyKeys, err := security.GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	clientKeys, _ := security.GenerateKeyPair()
	serverKeys, _ := security.GenerateKeyPair()
	strangerKeys, _ := security.GenerateKeyPair()
	sys := newSystem(t, 0)
	p, err := actors.New(actors.Config{Host: "127.0.0.1", Logger: testutil.Quiet(),
		Security: security.CurveServer(proxyKeys, security.AllowKeys(clientKeys.Public, serverKeys.Public)),
		Registry: actors.RegistryConfig{Endpoints: sys.etcd.Endpoints(), Name: "node0", TTL: 2 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	cnt := newCounter()
	srv := sys.echoServer("sec", "s1", cnt, func(cfg *ServerConfig) {
		cfg.Security = security.CurveClient(proxyKeys.Public, serverKeys)
		cfg.Handlers["tally"] = func(_ context.Context, m *Message) (any, error) { cnt.add("fanout", m); return nil, nil }
	})
	c := sys.client(ClientConfig{Acks: true, Security: security.CurveClient(proxyKeys.Public, clientKeys)})
	waitLinks(t, c.links, 1)
	waitLinks(t, srv.links, 1)
	got, err := c.Call(ctxFor(t, wait), Target{Topic: "sec"}, "echo", map[string]any{"x": 1})
	if err != nil || compact(t, got) != `{"server":"s1","x":1}` {
		t.Fatalf("Call over CURVE: %s, %v", got, err)
	}
	testutil.CheckFor(t, wait, func() error {
		if err := c.Fanout(ctxFor(t, wait), "sec", "tally", nil); err != nil {
			return err
		}
		if cnt.server("fanout") == 0 {
			return errors.New("no fanout through the CURVE publisher yet")
		}
		return nil
	})
	if got := p.Stats("frontend").AuthRefused.Load(); got != 0 {
		t.Fatalf("auth refused %d, want 0", got)
	}

	stranger := sys.client(ClientConfig{Security: security.CurveClient(proxyKeys.Public, strangerKeys)})
	_, err = stranger.Call(ctxFor(t, 500*time.Millisecond), Target{Topic: "sec"}, "echo", nil)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("a client whose key is not allowed: got %v, want ErrTimeout (no proxy connected)", err)
	}
	testutil.CheckFor(t, wait, func() error {
		if got := p.Stats("frontend").AuthRefused.Load(); got == 0 {
			return fmt.Errorf("auth refused %d, want at least 1", got)
		}
		return nil
	})
}
