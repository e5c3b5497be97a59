package actors

import (
	"fmt"
	"strings"
	"testing"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
	"github.com/zmq-proxy/zmq-proxy/transport"
)

func freePort(t *testing.T) int {
	t.Helper()
	return testutil.FreePorts(t, 1)[0]
}

func isType(typ string) func(transport.Msg) bool {
	return func(m transport.Msg) bool { return len(m) > 3 && string(m[3]) == typ }
}

// Router-only mode: fanout and notify addressed to a server's identity
// reach it as a direct type does, once; nothing is published, no PUB is
// bound, and no ACK is sent for them even with ack_pub_sub.
func TestRouterOnlyRoutesFanoutTypes(t *testing.T) {
	p := startProxy(t, Config{Kind: KindDoubleRouter, PubSub: PubSubOff, AckPubSub: true})
	a := p.Addrs()
	if a.Publisher != "" || p.Stats(PublisherName) != nil {
		t.Fatalf("router-only proxy bound a publisher: %q", a.Publisher)
	}
	var atClient, atS1, atS2 collector
	client := dealer(t, "host/client-1", a.Frontend, &atClient)
	dealer(t, "host/compute/s1/u1", a.Backend, &atS1)
	dealer(t, "host/compute/s2/u2", a.Backend, &atS2)
	testutil.CheckFor(t, wait, func() error {
		if n := p.Stats(BackendName).Peers.Load(); n != 2 {
			return fmt.Errorf("backend peers: got %d, want 2", n)
		}
		return nil
	})
	// One fanout per identity, as a router-only client sends it.
	for _, id := range []string{"host/compute/s1/u1", "host/compute/s2/u2"} {
		client.Send(envelope("3", id, "f-"+id, `[{}, {"method": "m", "args": {}}]`), nil)
		client.Send(envelope("4", id, "n-"+id, "note"), nil)
	}
	for _, s := range []struct {
		id string
		c  *collector
	}{{"host/compute/s1/u1", &atS1}, {"host/compute/s2/u2", &atS2}} {
		testutil.CheckFor(t, wait, func() error {
			if f, n := s.c.count(isType("3")), s.c.count(isType("4")); f != 1 || n != 1 {
				return fmt.Errorf("%s: got %d fanout and %d notify, want 1 each", s.id, f, n)
			}
			return nil
		})
		s.c.mu.Lock()
		got := fmt.Sprintf("%q", s.c.msgs[0])
		s.c.mu.Unlock()
		want := fmt.Sprintf("%q", []string{"", "1.0", "host/client-1", "3", "f-" + s.id, `[{}, {"method": "m", "args": {}}]`})
		if got != want {
			t.Errorf("%s got %s, want %s", s.id, got, want)
		}
	}
	if n := len(atClient.msgs); n != 0 {
		t.Errorf("client got %d messages (ACKs?), want none in router-only mode", n)
	}
}

// use_pub_sub not set: a fanout whose routing key is a connected server's
// identity is routed, any other is published; use_pub_sub = true
// publishes both. Pairs sent back to back share read bursts, so the
// router, the publisher and the ACK must each act on its own messages of a
// burst only; ack_pub_sub acknowledges the published ones only.
func TestFanoutRoutedOrPublished(t *testing.T) {
	const pairs = 200
	for _, tt := range []struct {
		mode          PubSub
		wantRouted    int
		wantPublished int
	}{
		{PubSubAuto, pairs, pairs},
		{PubSubOn, 0, 2 * pairs},
	} {
		t.Run(tt.mode.String(), func(t *testing.T) {
			p := startProxy(t, Config{Kind: KindDoubleRouter, PubSub: tt.mode, AckPubSub: true})
			a := p.Addrs()
			var atServer, atSub, atClient collector
			client := dealer(t, "host/client-1", a.Frontend, &atClient)
			dealer(t, "host/compute/s1/u1", a.Backend, &atServer)
			// Subscribed to both keys, so that whatever is published shows.
			subscriber(t, a.Publisher, &atSub, "compute", "host/compute")
			fanoutUntil(t, client, "compute.probe", "probe", &atSub)
			for i := range pairs {
				client.Send(envelope("3", "host/compute/s1/u1", fmt.Sprintf("m-id-%d", i), "x"), nil)
				client.Send(envelope("4", "compute", fmt.Sprintf("m-topic-%d", i), "x"), nil)
			}
			testutil.CheckFor(t, wait, func() error {
				routed := atServer.count(idAt(4, "m-")) // ["", "1.0", reply_id, type, id, ...]
				published := atSub.count(idAt(3, "m-")) // [topic, "1.0", type, id, ...]
				acked := atClient.count(idAt(4, "m-"))  // ["", "1.0", proxy_id, "6", id]
				if routed != tt.wantRouted || published != tt.wantPublished || acked != tt.wantPublished {
					return fmt.Errorf("routed %d, published %d, acked %d; want %d, %d, %d",
						routed, published, acked, tt.wantRouted, tt.wantPublished, tt.wantPublished)
				}
				return nil
			})
		})
	}
}

func TestLocalPublisherRefusesRouterOnly(t *testing.T) {
	_, err := New(Config{Kind: KindLocalPublisher, PubSub: PubSubOff, SubscribeOn: []string{"127.0.0.1:1"},
		Host: "127.0.0.1", Logger: testutil.Quiet(), Registry: RegistryConfig{Disabled: true}})
	if err == nil || !strings.Contains(err.Error(), "use_pub_sub") {
		t.Fatalf("local proxy with use_pub_sub = false: got %v, want an error naming use_pub_sub", err)
	}
}

// idAt matches messages whose frame i starts with prefix.
func idAt(i int, prefix string) func(transport.Msg) bool {
	return func(m transport.Msg) bool { return len(m) > i && strings.HasPrefix(string(m[i]), prefix) }
}

func TestRoutedSet(t *testing.T) {
	var r routedSet
	if r.has(0) {
		t.Fatal("nil set has 0")
	}
	r = r.mark(2, 4)
	if !r.has(2) || r.has(1) || r.has(3) || r.has(9) {
		t.Fatalf("set after mark(2): %v", r)
	}
}
