package actors

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
	"github.com/zmq-proxy/zmq-proxy/registry"
	"github.com/zmq-proxy/zmq-proxy/transport"
)

func records(t *testing.T, cli *clientv3.Client) []registry.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, registry.DefaultPrefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	var out []registry.Record
	for _, kv := range resp.Kvs {
		var r registry.Record
		if err := json.Unmarshal(kv.Value, &r); err != nil {
			t.Fatalf("record %s: %v", kv.Key, err)
		}
		out = append(out, r)
	}
	return out
}

// startRegistered starts a double router registered as node-a, with ttl,
// in an embedded etcd, and waits for its one record.
func startRegistered(t *testing.T, ttl time.Duration) (*testutil.EmbeddedEtcd, *clientv3.Client, *Proxy) {
	t.Helper()
	etcd := testutil.Embedded(t)
	cli := etcd.Client(t)
	p := startProxy(t, Config{Kind: KindDoubleRouter, Registry: RegistryConfig{Endpoints: etcd.Endpoints(), TTL: ttl, Name: "node-a"}})
	testutil.CheckFor(t, wait, func() error {
		if n := len(records(t, cli)); n != 1 {
			return fmt.Errorf("records: got %d, want 1", n)
		}
		return nil
	})
	return etcd, cli, p
}

// The proxy registers its bound addresses; etcd going away and coming back
// does not stop routing, and the proxy registers again by itself; Close
// removes the record at once.
func TestProxyRegistersAndSurvivesEtcdRestart(t *testing.T) {
	etcd, cli, p := startRegistered(t, time.Second)
	rec := records(t, cli)[0]
	a := p.Addrs()
	if rec.Kind != "double-router" || rec.Host != "node-a" || rec.Frontend != a.Frontend || rec.Backend != a.Backend || rec.Publisher != a.Publisher {
		t.Fatalf("record %+v does not match the bound addresses %+v", rec, a)
	}
	if rec.Generation == 0 || rec.Started.IsZero() {
		t.Fatalf("record %+v has no start time or generation", rec)
	}

	var atServer collector
	client := attach(t, p, &atServer)

	etcd.Stop()
	testutil.CheckTrue(t, wait, "lease loss not noticed", func() bool { return !p.Registered() })
	// Routing goes on without etcd.
	client.Send(envelope("2", "server-1", "while-etcd-down", "x"), nil)
	testutil.CheckTrue(t, wait, "routing stopped while etcd was down", func() bool { return atServer.count(hasID("while-etcd-down")) == 1 })
	etcd.Start()
	testutil.CheckTrue(t, wait, "proxy did not register again", func() bool { return p.Registered() && len(records(t, cli)) == 1 })

	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(records(t, cli)); n != 0 {
		t.Fatalf("records after Close: got %d, want 0", n)
	}
}

// On Close the record is deleted, and etcd has answered, before any socket
// closes: a watch sees the DELETE at a revision no later than the one etcd
// reports at the moment a peer sees its connection close (read from inside
// the peer's callback, linearizably).
func TestCloseDeregistersBeforeSocketsClose(t *testing.T) {
	_, cli, p := startRegistered(t, 5*time.Second)
	wctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watch := cli.Watch(wctx, registry.DefaultPrefix, clientv3.WithPrefix())

	type closeSeen struct {
		records  int64 // records in etcd then
		revision int64 // etcd's revision then
		err      error
	}
	seen := make(chan closeSeen, 1)
	var once sync.Once
	d := transport.NewDealer(transport.Options{OnPeer: func(_ []byte, up bool) {
		if up {
			return
		}
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			resp, err := cli.Get(ctx, registry.DefaultPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
			if err != nil {
				seen <- closeSeen{err: err}
				return
			}
			seen <- closeSeen{records: resp.Count, revision: resp.Header.Revision}
		})
	}})
	if err := d.Connect(p.Addrs().Frontend); err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	testutil.CheckFor(t, wait, func() error {
		if n := d.Connected(); n != 1 {
			return fmt.Errorf("peer connections: got %d, want 1", n)
		}
		return nil
	})

	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	var deleted int64
	select {
	case resp := <-watch:
		if err := resp.Err(); err != nil {
			t.Fatalf("watch: %v", err)
		}
		for _, ev := range resp.Events {
			if ev.Type == clientv3.EventTypeDelete {
				deleted = ev.Kv.ModRevision
			}
		}
	case <-time.After(wait):
		t.Fatal("the watch saw nothing within the wait")
	}
	if deleted == 0 {
		t.Fatal("the watch's first response holds no DELETE")
	}
	var s closeSeen
	select {
	case s = <-seen:
	case <-time.After(wait):
		t.Fatal("the peer did not see its connection close")
	}
	if s.err != nil {
		t.Fatalf("read etcd when the peer saw the close: %v", s.err)
	}
	if s.records != 0 || deleted > s.revision {
		t.Fatalf("when the peer saw its connection close: %d records at revision %d, the delete at revision %d; want 0 records and the delete no later",
			s.records, s.revision, deleted)
	}
}

// With a registry the proxy is ready only while its record is registered.
func TestReadyzFollowsRegistration(t *testing.T) {
	etcd := testutil.Embedded(t)
	p := startProxy(t, Config{Kind: KindDoubleRouter, MetricsAddr: "127.0.0.1:0",
		Registry: RegistryConfig{Endpoints: etcd.Endpoints(), TTL: time.Second, Name: "node-a"}})
	checkStatus(t, p, "/readyz", 200, "ok")
	etcd.Stop()
	checkStatus(t, p, "/readyz", 503, "not registered")
	checkStatus(t, p, "/healthz", 200, "ok")
	etcd.Start()
	checkStatus(t, p, "/readyz", 200, "ok")
}

// Ready is closed once the record is in etcd, not before: a proxy started
// while etcd is down is not ready until etcd answers and it registers.
func TestReadyWaitsForRegistration(t *testing.T) {
	etcd := testutil.Embedded(t)
	cli := etcd.Client(t)
	etcd.Stop()
	p := startProxy(t, Config{Kind: KindDoubleRouter, Registry: RegistryConfig{Endpoints: etcd.Endpoints(), TTL: time.Second, Name: "node-a"}})
	select {
	case <-p.Ready():
		t.Fatal("Ready closed while etcd is down")
	default:
	}
	etcd.Start()
	select {
	case <-p.Ready():
	case <-time.After(wait):
		t.Fatalf("Ready not closed within %s of etcd's start", wait)
	}
	if n := len(records(t, cli)); n != 1 {
		t.Fatalf("records once Ready: got %d, want 1", n)
	}
}
