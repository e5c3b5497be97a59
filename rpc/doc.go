// Package rpc is the service side of zmq-proxy: a Client that sends calls,
// casts, fanouts and notifications, and a Server that handles them, both
// through the central proxies they find in the registry, speaking
// oslo.messaging's ZeroMQ frames and payloads byte for byte
// (docs/protocol.md), so that Go and Python services talk through the
// same proxies.
//
// # Discovery
//
// Both follow the registry of their config (a registry.Registry: etcd,
// watched, or oslo.messaging's matchmaker, read every poll; package
// registry says how each keeps what it stops listing for a while). A
// client keeps one DEALER connection to every central proxy's frontend
// and picks one round-robin per message. A server keeps one to every backend (a single-router
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
// ends with ErrTimeout, a Cast returns nil. A CALL whose server is not
// connected to the proxy (killed, its registration not yet expired) is
// NACKed by the proxy and sent at once to another server of the target.
//
// With ClientConfig.Acks (oslo's rpc_use_acks), a server acknowledges each
// CALL and CAST on receipt (the message id asks it to; a server with
// ServerConfig.Acks ACKs every one, as oslo.messaging's servers do, and
// without it ACKs only what is asked: docs/protocol.md). A client sends a
// message again:
//   - at once, through another proxy, when the proxy it went through dies,
//     leaves the registry before the ACK, or hangs (its heartbeats go
//     unanswered for ClientConfig.HeartbeatTimeout, 750 ms);
//   - at once, to another server, when a proxy NACKs it (its server is
//     not connected there);
//   - when its server deregisters: at once if it was not acknowledged,
//     after one more AckTimeout for the reply if it was (a server that
//     stops cleanly answers what it acknowledged before it deregisters);
//   - when the ACK is late: to the same server while it is registered,
//     after AckTimeout×AckMultiplier^n, at most Retries times (ErrNoAck
//     then). A resend that finds no proxy or no server is such an attempt
//     too: the caller never gets an error for a message that may have
//     been handled, whose retry would be a new message.
//
// A server remembers each message id with its sender for MessageTTL from
// its last use (receipt, or the reply of a CALL), at most MaxSeen of them
// and MaxReplyBytes of replies: a message sent again within that is
// acknowledged again, a CALL gets its first reply again, and the handler
// does not run twice. That holds while MaxSeen covers the server's peak
// rate times the time a client may still send a message again (its
// CallTimeout, 60 s by default, or a Cast's context; a proxy that hung
// delivers what it held when it resumes, so add the longest hang to
// cover): the default, one million ids, covers 16,000 messages a second
// for a minute. Ids forgotten sooner are counted (ServerStats.Evicted) and
// logged. A server that stops cleanly (Shutdown, Close) marks itself
// draining, so that clients send it nothing new, finishes and answers
// what it acknowledged, and only then deregisters. A server killed
// between handling a message and its ACK leaving lets the client send the
// message to another server, and it is then handled twice; and since the
// ACK says "received" (oslo.messaging's rule), a CAST that a server
// acknowledged and had not handled when it was killed is lost with it; a
// CALL is not: its client sends it again to another server when the dead
// one's registration goes. Fanouts and notifications stay at most once.
//
// Of two registrations of one server (same host, topic and server name),
// clients use the newer: a server restarted after kill -9 replaces its
// stale registration at once. A new client's first server and first proxy
// are chosen at random.
//
// # Errors
//
// Every send ends: by its context, or after ClientConfig.CallTimeout when
// the context has no deadline. The errors say what happened:
//   - ErrBadTarget: a target, method or argument that cannot be sent;
//   - ErrNoServer: no server is registered for the target;
//   - ErrNoProxy: no proxy is registered (or none connected in time);
//   - ErrBusy: every connected proxy's link is full (a first send waits
//     for room within its context, then it is wrapped in ErrTimeout);
//   - ErrTimeout: the context's deadline came first; it wraps
//     context.DeadlineExceeded (and ErrNoProxy or ErrBusy when that is
//     what it waited for);
//   - context.Canceled: the caller cancelled the context (not ErrTimeout);
//   - ErrNoAck: with acks, every attempt went unacknowledged;
//   - ErrClosed: the client was closed;
//   - ErrMalformed: a reply that is not what oslo.messaging sends;
//   - *RemoteError: a failure the server's handler raised (ReplyDropped
//     when a resent CALL's reply was no longer kept: the call ran once).
package rpc
