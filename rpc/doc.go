// Package rpc is the service side of zmq-proxy: a Client that sends calls,
// casts, fanouts and notifications, and a Server that handles them, both
// through the central proxies they find in etcd, speaking oslo.messaging's
// ZeroMQ frames and payloads byte for byte (docs/protocol.md), so that Go
// and Python services talk through the same proxies.
//
// # Discovery
//
// Both watch etcd (never poll it); on Redis, which has no watch, they read
// it every RedisPoll, as oslo.messaging's matchmaker does. A client keeps one DEALER
// connection to every central proxy's frontend and picks one round-robin
// per message. A server keeps one to every backend (a single-router
// proxy's frontend), subscribes its topic on its node's local publisher
// proxy (a "local" record with the server's host name), else on every
// central publisher, and registers its identity under a lease for its
// topic and for topic/server. Proxies and servers that come, go or move
// are followed without a restart.
//
// # Delivery
//
// Without acks (the default, as in oslo.messaging), delivery is at most
// once: a message queued to a proxy that dies with it is lost, a Call then
// ends with ErrTimeout, a Cast returns nil.
//
// With ClientConfig.Acks (oslo's rpc_use_acks), a server acknowledges each
// CALL and CAST on receipt. A client that gets no ACK in time sends the
// message again, to the same server while it is registered, through
// another proxy, after a timeout that grows with each attempt, at most
// Retries times; a message waiting on a proxy whose record disappears or
// whose connection drops is sent again at once. A server remembers message
// ids for MessageTTL, and at most MaxSeen of them (the oldest go first): a
// message sent again within that is acknowledged again, a CALL gets its
// first reply again, and the handler does not run twice. With the default
// backoff and no proxy lost meanwhile, the last resend leaves about 14 s
// after the first send (each resend at once after a lost proxy starts the
// wait again), so a server that takes more than MaxSeen/14 s (about 7,000)
// messages a second needs a larger MaxSeen to keep that promise. The
// memory is the server's own: a server killed between handling a message
// and its ACK leaving lets the client send the message to another server
// of the topic once the dead one's registration expired, and it is then
// handled twice (a clean Close deregisters first and finishes what it
// acknowledged). And since the ACK says "received" (oslo.messaging's
// rule), a CAST that a server acknowledged and had not handled when it was
// killed is lost with it; a CALL is not: its client sends it again to
// another server when the dead one's registration goes. Fanouts and
// notifications stay at most once.
//
// Errors say what happened: ErrNoProxy, ErrNoServer, ErrTimeout (which
// wraps context.DeadlineExceeded), ErrNoAck, and *RemoteError for a
// failure the server's handler raised. A Call never outlives its context,
// nor ClientConfig.CallTimeout when the context has no deadline.
package rpc
