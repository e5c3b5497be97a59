package actors

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
	"github.com/zmq-proxy/zmq-proxy/registry"
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

// The proxy registers its bound addresses; etcd going away and coming back
// does not stop routing, and the proxy registers again by itself; Close
// removes the record at once.
func TestProxyRegistersAndSurvivesEtcdRestart(t *testing.T) {
	etcd := testutil.Embedded(t)
	cli := etcd.Client(t)
	p := startProxy(t, Config{Kind: KindDoubleRouter, Registry: RegistryConfig{Endpoints: etcd.Endpoints(), TTL: time.Second, Name: "node-a"}})
	testutil.Eventually(t, wait, func() bool { return len(records(t, cli)) == 1 }, "proxy not registered")
	rec := records(t, cli)[0]
	a := p.Addrs()
	if rec.Kind != "double-router" || rec.Host != "node-a" || rec.Frontend != a.Frontend || rec.Backend != a.Backend || rec.Publisher != a.Publisher {
		t.Fatalf("record %+v does not match the bound addresses %+v", rec, a)
	}
	if rec.Generation == 0 || rec.Started.IsZero() {
		t.Fatalf("record %+v has no start time or generation", rec)
	}

	var atServer collector
	client := dealer(t, "client-1", a.Frontend, nil)
	dealer(t, "server-1", a.Backend, &atServer)
	testutil.Eventually(t, wait, func() bool { return p.Stats(BackendName).Peers.Load() == 1 }, "server not attached")

	etcd.Stop()
	testutil.Eventually(t, wait, func() bool { return !p.Registered() }, "lease loss not noticed")
	// Routing goes on without etcd.
	client.Send(envelope("2", "server-1", "while-etcd-down", "x"), nil)
	testutil.Eventually(t, wait, func() bool { return atServer.count(hasID("while-etcd-down")) == 1 }, "routing stopped while etcd was down")
	etcd.Start()
	testutil.Eventually(t, wait, func() bool { return p.Registered() && len(records(t, cli)) == 1 }, "proxy did not register again")

	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(records(t, cli)); n != 0 {
		t.Fatalf("records after Close: got %d, want 0", n)
	}
}
