package security

import "errors"

var (
	// ErrRefused: the peer's credentials were not accepted (PLAIN: unknown
	// user or wrong password; CURVE: a client key not in the allow-list, or
	// a HELLO that does not open with our key, i.e. the client has the
	// wrong server key), or the server refused ours (an ERROR command).
	ErrRefused = errors.New("credentials refused")
	// ErrHandshake: the greeting or the handshake broke the protocol
	// (wrong mechanism, malformed or oversized command, bad metadata).
	ErrHandshake = errors.New("security handshake failed")
	// ErrDecrypt: a CURVE message did not decrypt, or its nonce did not
	// increase. The connection is unusable after it.
	ErrDecrypt = errors.New("message failed to decrypt")
	// ErrKey: a key or certificate could not be read.
	ErrKey = errors.New("bad key")
	// ErrThrottled: a handshake was turned away unchecked because too many
	// arrive at once (CURVE HELLOs over the rate limits, PLAIN HELLOs over
	// the password-check queue). The client was sent ERROR "300"
	// (temporary) and may try again.
	ErrThrottled = errors.New("handshake throttled")
	// ErrReplayed: a CURVE HELLO repeated one already seen (the same
	// client short-term key), as a captured HELLO replayed is.
	ErrReplayed = errors.New("replayed handshake")
)
