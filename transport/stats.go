package transport

import "sync/atomic"

// Stats are one socket's counters. They are updated with atomics on the hot
// path and outlive the socket, so a restarted socket keeps counting where
// the failed one stopped.
type Stats struct {
	Received  atomic.Uint64 // messages read from peers
	Sent      atomic.Uint64 // messages queued to a peer (routed)
	Published atomic.Uint64 // PUB: messages published (once each, whatever the subscriber count)

	DroppedHWM             atomic.Uint64 // a peer's queue was at its high-water mark
	DroppedUnknownIdentity atomic.Uint64 // ROUTER: no peer with the destination identity
	DroppedOversize        atomic.Uint64 // a peer sent more than the maximum size (connection closed)
	DroppedMalformed       atomic.Uint64 // counted by the envelope's user
	DroppedUnknownVersion  atomic.Uint64 // counted by the envelope's user
	DroppedRestarting      atomic.Uint64 // counted by the socket's owner: delivered while it was stopped or restarting
	DroppedPong            atomic.Uint64 // a PING answered while a PONG was still queued (one is enough)

	Peers        atomic.Int64  // connected peers now
	Refused      atomic.Uint64 // connections refused (duplicate identity)
	BadHandshake atomic.Uint64 // connections that failed the handshake

	ProtocolErrors  atomic.Uint64 // connections closed for a ZMTP violation (for example a PING context over 16 bytes)
	RefusedTopics   atomic.Uint64 // PUB: subscriptions ignored for the per-subscriber limits
	RefusedMaxConns atomic.Uint64 // connections closed on accept: the connection limit was reached
	// With Options.Security:
	AuthRefused   atomic.Uint64 // handshakes refused for their credentials (also in BadHandshake)
	DecryptFailed atomic.Uint64 // connections closed for a message that failed to decrypt
	AuthThrottled atomic.Uint64 // handshakes turned away unchecked: CURVE HELLO rate limits, PLAIN check queue (also in BadHandshake)
	AuthReplayed  atomic.Uint64 // CURVE HELLOs refused as replays (also in BadHandshake)
}

// Dropped is every drop counter by its reason, as /metrics labels it
// (dropped{reason=...}) and /stats names it.
func (s *Stats) Dropped() map[string]uint64 {
	return map[string]uint64{
		"malformed":        s.DroppedMalformed.Load(),
		"unknown_version":  s.DroppedUnknownVersion.Load(),
		"unknown_identity": s.DroppedUnknownIdentity.Load(),
		"hwm":              s.DroppedHWM.Load(),
		"oversize":         s.DroppedOversize.Load(),
		"restarting":       s.DroppedRestarting.Load(),
		"pong":             s.DroppedPong.Load(),
	}
}
