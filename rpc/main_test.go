package rpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/zmq-proxy/zmq-proxy/actors"
	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
	"github.com/zmq-proxy/zmq-proxy/registry"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const wait = 30 * time.Second

// system is an embedded etcd and the proxies registered in it.
type system struct {
	t       testing.TB
	etcd    *testutil.EmbeddedEtcd
	cli     *clientv3.Client
	prefix  string
	proxies []*actors.Proxy
}

func newSystem(t testing.TB, proxies int) *system {
	t.Helper()
	e := testutil.Embedded(t)
	s := &system{t: t, etcd: e, cli: e.Client(t), prefix: registry.DefaultPrefix}
	for range proxies {
		s.addProxy(actors.KindDoubleRouter, "node0")
	}
	return s
}

// addProxy starts a proxy of kind registered under host name.
func (s *system) addProxy(kind actors.Kind, name string) *actors.Proxy {
	s.t.Helper()
	p, err := actors.New(actors.Config{Kind: kind, Host: "127.0.0.1", Logger: testutil.Quiet(),
		Registry: actors.RegistryConfig{Endpoints: s.etcd.Endpoints(), Name: name, TTL: 2 * time.Second}})
	if err != nil {
		s.t.Fatalf("proxy: %v", err)
	}
	s.t.Cleanup(func() { p.Close() })
	testutil.CheckFor(s.t, wait, func() error {
		if !p.Registered() {
			return errors.New("proxy not registered")
		}
		return nil
	})
	s.proxies = append(s.proxies, p)
	return p
}

func (s *system) client(cfg ClientConfig) *Client {
	s.t.Helper()
	cfg.Registry = registry.NewEtcd(s.cli, registry.Options{})
	s.defaults(&cfg.Host, &cfg.Logger)
	return started(s, "NewClient", func(ctx context.Context) (*Client, error) { return NewClient(ctx, cfg) })
}

// server starts a server of cfg on the system's etcd.
func (s *system) server(cfg ServerConfig) *Server {
	s.t.Helper()
	cfg.Registry = registry.NewEtcd(s.cli, registry.Options{})
	s.defaults(&cfg.Host, &cfg.Logger)
	return started(s, "NewServer", func(ctx context.Context) (*Server, error) { return NewServer(ctx, cfg) })
}

// defaults fills what a client's or server's config leaves empty.
func (s *system) defaults(host *string, log **slog.Logger) {
	if *host == "" {
		*host = "node0"
	}
	if *log == nil {
		*log = testutil.Quiet()
	}
}

// started runs start within the test timeout, fails the test on its
// error, and closes what it started at the end of the test.
func started[T interface{ Close() error }](s *system, what string, start func(context.Context) (T, error)) T {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	v, err := start(ctx)
	if err != nil {
		s.t.Fatalf("%s: %v", what, err)
	}
	s.t.Cleanup(func() { v.Close() })
	return v
}

// counter counts handler runs per message id.
type counter struct {
	mu   sync.Mutex
	runs map[string]int
	by   map[string]int // server name -> runs
}

func newCounter() *counter { return &counter{runs: map[string]int{}, by: map[string]int{}} }

func (c *counter) add(server string, m *Message) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.runs[m.MessageID]++
	c.by[server]++
}

func (c *counter) total() (ids, runs int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.runs {
		runs += n
	}
	return len(c.runs), runs
}

func (c *counter) server(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.by[name]
}

// echoServer serves topic as name: echo returns its args and the server's
// name, fail raises ValueError, block waits for release.
func (s *system) echoServer(topic, name string, cnt *counter, mod func(*ServerConfig)) *Server {
	s.t.Helper()
	handlers := map[string]Handler{
		"echo": func(_ context.Context, m *Message) (any, error) {
			cnt.add(name, m)
			var args map[string]any
			if err := json.Unmarshal(m.Args, &args); err != nil {
				return nil, err
			}
			args["server"] = name
			return args, nil
		},
		"fail": func(_ context.Context, m *Message) (any, error) {
			cnt.add(name, m)
			return nil, &RemoteError{Class: "ValueError", Module: "builtins", Message: "asked to fail"}
		},
	}
	cfg := ServerConfig{Topic: topic, Server: name, Handlers: handlers,
		Notify: func(_ context.Context, m *Message) { cnt.add(name, m) }}
	if mod != nil {
		mod(&cfg)
	}
	return s.server(cfg)
}

// waitTargets waits until a client sees n identities for target.
func waitTargets(t *testing.T, c *Client, target string, n int) {
	t.Helper()
	testutil.CheckFor(t, wait, func() error {
		if got := len(c.disc.identities(target)); got != n {
			return fmt.Errorf("%s: %d identities, want %d", target, got, n)
		}
		return nil
	})
}

// waitLinks waits until a client or server has n links up.
func waitLinks(t *testing.T, ls *links, n int) {
	t.Helper()
	testutil.CheckFor(t, wait, func() error {
		if listed, up := ls.count(); listed != n || up != n {
			return fmt.Errorf("%d links listed, %d up, want %d", listed, up, n)
		}
		return nil
	})
}
