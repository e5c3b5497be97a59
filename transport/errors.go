package transport

import "errors"

var (
	// ErrOversize: a peer announced a frame or message larger than the
	// configured maximum. The connection is closed before anything is
	// allocated for it.
	ErrOversize = errors.New("message exceeds the maximum size")
	// ErrTooManyFrames: a peer sent a message of more frames than the
	// configured maximum. The connection is closed, as for ErrOversize.
	ErrTooManyFrames = errors.New("message exceeds the maximum number of frames")
	// ErrProtocol: a peer broke ZMTP framing (for example a command frame
	// with the MORE flag).
	ErrProtocol = errors.New("zmtp protocol violation")
	// ErrHandshake: the ZMTP greeting or handshake failed.
	ErrHandshake = errors.New("zmtp handshake failed")
	// ErrDuplicateIdentity: a second connection claimed an identity that a
	// connected peer already has; libzmq refuses the second one, so do we.
	ErrDuplicateIdentity = errors.New("duplicate peer identity")
	// ErrClosed: the socket is closed.
	ErrClosed = errors.New("socket closed")

	// ErrMalformed: an envelope that breaks the v1.0 layout.
	ErrMalformed = errors.New("malformed envelope")
	// ErrUnknownVersion: an envelope of a message version we do not speak.
	ErrUnknownVersion = errors.New("unknown message version")
)
