package actors

import (
	"fmt"
	"sync/atomic"

	"github.com/zmq-proxy/zmq-proxy/transport"
)

// PubSub is oslo.messaging's [oslo_messaging_zmq] use_pub_sub: whether
// fanout types (3 and 4) are published or routed like direct types
// (docs/protocol.md, "Router-only mode").
type PubSub int

const (
	// PubSubAuto (use_pub_sub not set): a fanout message whose routing key
	// is the identity of a peer connected to the ROUTER that direct types
	// go to is routed to it; any other is published. Router-only and
	// pub/sub services work through the same proxy.
	PubSubAuto PubSub = iota
	// PubSubOn (use_pub_sub = true): fanout types are published.
	PubSubOn
	// PubSubOff (use_pub_sub = false): fanout types are routed like direct
	// types; the proxy publishes nothing and binds no PUB.
	PubSubOff
)

func (m PubSub) String() string {
	switch m {
	case PubSubAuto:
		return "auto"
	case PubSubOn:
		return "true"
	case PubSubOff:
		return "false"
	}
	return fmt.Sprintf("pubsub(%d)", int(m))
}

// routerRef is the ROUTER socket a router actor owns now (nil while it
// restarts). Other router actors' reader goroutines ask it Connected,
// which only reads its peer table.
type routerRef = atomic.Pointer[transport.Router]

// routesFanout says whether a fanout message with routing key key, read
// on this spec's socket, is routed like a direct type instead of
// published: always in router-only mode, never with use_pub_sub = true,
// and when use_pub_sub is not set, when key is the identity of a peer
// connected to the ROUTER that direct types go to. The decision is made
// once, where the message is read, and travels with the burst (routedSet).
func (s *socketSpec) routesFanout(key []byte) bool {
	switch s.pubSub {
	case PubSubOff:
		return true
	case PubSubOn:
		return false
	}
	if s.directSock == nil {
		return false
	}
	r := s.directSock.Load()
	return r != nil && r.Connected(key)
}

// routedSet marks the messages of a burst that are fanout types routed
// like direct types. nil: none.
type routedSet []bool

// mark marks message i of a burst of n.
func (r routedSet) mark(i, n int) routedSet {
	if r == nil {
		r = make(routedSet, n)
	}
	r[i] = true
	return r
}

// has reports whether message i is marked.
func (r routedSet) has(i int) bool { return i < len(r) && r[i] }
