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
	DroppedFrames          atomic.Uint64 // a peer sent a message of more than the maximum frames (connection closed)
	DroppedIdentity        atomic.Uint64 // ROUTER: a destination identity over 255 bytes (ZMTP's limit)

	Peers        atomic.Int64  // connected peers now
	Refused      atomic.Uint64 // connections refused (duplicate identity)
	BadHandshake atomic.Uint64 // connections that failed the handshake

	ProtocolErrors  atomic.Uint64 // connections closed for a ZMTP violation (for example a PING context over 16 bytes)
	RefusedTopics   atomic.Uint64 // PUB: subscriptions ignored for the per-subscriber or per-PUB limits
	RefusedMaxConns atomic.Uint64 // connections closed after their handshake: the connection limit was reached

	// Connections closed before they became peers, by reason (see Refusals).
	RefusedGreetingTimeout atomic.Uint64 // no 64-byte greeting within GreetingTimeout
	RefusedHandshakeLimit  atomic.Uint64 // closed in the handshake: a newer one took the slot (all sources)
	RefusedSourceLimit     atomic.Uint64 // closed in the handshake: a newer one from the same address took the slot
	RefusedIdentity        atomic.Uint64 // an identity over 255 bytes (ZMTP's limit)
	// HeartbeatTimeouts: connections closed because the peer was silent
	// past Options.HeartbeatTimeout (it hung).
	HeartbeatTimeouts atomic.Uint64
	// Nacked: direct messages to an identity not connected here whose
	// sender asked to be told, and was (a NACK; docs/protocol.md).
	Nacked atomic.Uint64
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
		"malformed":         s.DroppedMalformed.Load(),
		"unknown_version":   s.DroppedUnknownVersion.Load(),
		"unknown_identity":  s.DroppedUnknownIdentity.Load(),
		"hwm":               s.DroppedHWM.Load(),
		"oversize":          s.DroppedOversize.Load(),
		"restarting":        s.DroppedRestarting.Load(),
		"pong":              s.DroppedPong.Load(),
		"too_many_frames":   s.DroppedFrames.Load(),
		"identity_too_long": s.DroppedIdentity.Load(),
	}
}

// Refusals is every connection refused before it became a peer, by its
// reason, as /metrics labels it (refused{reason=...}).
func (s *Stats) Refusals() map[string]uint64 {
	return map[string]uint64{
		"max_connections":    s.RefusedMaxConns.Load(),
		"duplicate_identity": s.Refused.Load(),
		"greeting_timeout":   s.RefusedGreetingTimeout.Load(),
		"handshake_limit":    s.RefusedHandshakeLimit.Load(),
		"source_limit":       s.RefusedSourceLimit.Load(),
		"identity_too_long":  s.RefusedIdentity.Load(),
	}
}
