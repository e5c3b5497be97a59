package actors

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
	"github.com/zmq-proxy/zmq-proxy/transport"
)

func subscriber(t *testing.T, endpoint string, c *collector, topics ...string) *transport.Sub {
	t.Helper()
	sub := transport.NewSub(transport.Options{OnBatch: c.onBatch, ReconnectMin: 10 * time.Millisecond, ReconnectMax: 100 * time.Millisecond})
	for _, tp := range topics {
		sub.Subscribe([]byte(tp))
	}
	if err := sub.Connect(endpoint); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Close() })
	return sub
}

// fanoutUntil sends fanout probes through client until the collector has
// one with the given id prefix (subscriptions take a moment to propagate
// through two hops).
func fanoutUntil(t *testing.T, client *transport.Dealer, topic, id string, c *collector) {
	t.Helper()
	testutil.CheckFor(t, wait, func() error {
		if c.count(hasID(id)) > 0 {
			return nil
		}
		client.Send(envelope("3", topic, id, "x"), nil) // again until the subscriptions have arrived
		return fmt.Errorf("fanout %s on %s has not arrived", id, topic)
	})
}

func TestLocalPublisherRepublishesFromSubscribeOn(t *testing.T) {
	central := startProxy(t, Config{Kind: KindDoubleRouter})
	local := startProxy(t, Config{Kind: KindLocalPublisher, SubscribeOn: []string{central.Addrs().Publisher}})
	if local.Addrs().Frontend != "" || local.Addrs().Publisher == "" {
		t.Fatalf("local proxy addresses: %+v", local.Addrs())
	}
	var a, b collector
	subscriber(t, local.Addrs().Publisher, &a, "compute")
	subscriber(t, local.Addrs().Publisher, &b, "network")
	client := dealer(t, "client-1", central.Addrs().Frontend, nil)
	fanoutUntil(t, client, "compute.node1", "probe-a", &a)
	fanoutUntil(t, client, "network", "probe-b", &b)
	for i := range 100 {
		client.Send(envelope("3", "compute.x", fmt.Sprintf("m%d", i), "payload"), nil)
	}
	client.Send(envelope("4", "network", "n1", "payload"), nil)
	testutil.CheckTrue(t, wait, "fanout through the local proxy incomplete", func() bool { return a.count(hasPrefixID("m")) == 100 && b.count(hasID("n1")) == 1 })
	// Byte for byte what the central proxy published.
	a.mu.Lock()
	got := a.msgs[len(a.msgs)-1]
	a.mu.Unlock()
	if want := []string{"compute.x", "1.0", "3", "m99", "payload"}; fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
		t.Fatalf("republished %q, want %q", got, want)
	}
	if b.count(hasPrefixID("m")) != 0 {
		t.Fatal("network subscriber got compute messages")
	}
	if n := central.Stats(PublisherName).Peers.Load(); n != 1 {
		t.Fatalf("central publisher has %d connections, want 1 (the local proxy)", n)
	}
}

func hasPrefixID(prefix string) func(transport.Msg) bool {
	return func(m transport.Msg) bool { return len(m) > 3 && strings.HasPrefix(string(m[3]), prefix) }
}

// Without subscribe_on the local proxy follows the registry: a central
// proxy that goes away and comes back on a new port is picked up again.
func TestLocalPublisherFollowsRegistry(t *testing.T) {
	etcd := testutil.Embedded(t)
	reg := RegistryConfig{Endpoints: etcd.Endpoints(), TTL: time.Second}
	checkLocalFollows(t, reg, "etcd")
}

// checkLocalFollows checks that a local proxy without subscribe_on, in reg,
// subscribes to a central proxy registered there, drops it when it closes
// and picks up its successor; from names the registry in the messages.
func checkLocalFollows(t *testing.T, reg RegistryConfig, from string) {
	t.Helper()
	central := startProxy(t, Config{Kind: KindDoubleRouter, Registry: reg})
	local := startProxy(t, Config{Kind: KindLocalPublisher, Registry: reg})
	var c collector
	subscriber(t, local.Addrs().Publisher, &c, "")
	client := dealer(t, "client-1", central.Addrs().Frontend, nil)
	fanoutUntil(t, client, "t", "first", &c)

	central.Close()
	testutil.CheckFor(t, wait, func() error {
		if n := local.Stats(SubscriberName).Peers.Load(); n != 0 {
			return fmt.Errorf("local proxy has %d publisher connections after the central one left %s, want 0", n, from)
		}
		return nil
	})
	central2 := startProxy(t, Config{Kind: KindDoubleRouter, Registry: reg})
	client2 := dealer(t, "client-2", central2.Addrs().Frontend, nil)
	fanoutUntil(t, client2, "t", "second", &c)
	if n := local.Stats(SubscriberName).Peers.Load(); n != 1 {
		t.Fatalf("local proxy has %d publisher connections, want 1", n)
	}
}

func TestLocalPublisherNeedsASource(t *testing.T) {
	_, err := New(Config{Kind: KindLocalPublisher, Host: "127.0.0.1", Logger: testutil.Quiet(), Registry: RegistryConfig{Disabled: true}})
	if err == nil || !strings.Contains(err.Error(), "subscribe_on") {
		t.Fatalf("local proxy with no source: got %v, want an error naming subscribe_on", err)
	}
}
