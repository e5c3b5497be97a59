package rpc

import (
	"encoding/json"
	"errors"
	"fmt"
)

var (
	// ErrNoProxy: no central proxy is registered, or none is connected
	// before the context ends.
	ErrNoProxy = errors.New("no proxy")
	// ErrNoServer: no server is registered for the target.
	ErrNoServer = errors.New("no server for the target")
	// ErrTimeout: the context ended before the reply (Call) or the ACK
	// (Cast with acks). It wraps the context's error, so errors.Is with
	// context.DeadlineExceeded holds too.
	ErrTimeout = errors.New("timed out")
	// ErrNoAck: with acks, every attempt went unacknowledged.
	ErrNoAck = errors.New("not acknowledged")
	// ErrClosed: the client or server is closed.
	ErrClosed = errors.New("closed")
	// ErrBadTarget: a target, method or argument that cannot be sent.
	ErrBadTarget = errors.New("bad target")
	// ErrMalformed: a message from the wire that is not what oslo.messaging's
	// driver sends; it is dropped and counted.
	ErrMalformed = errors.New("malformed message")
)

// RemoteError is a failure raised by the server's handler, as
// oslo.messaging serialises it in a REPLY: the exception's class and
// module, its message, and the traceback lines.
type RemoteError struct {
	Class     string         `json:"class"`
	Module    string         `json:"module"`
	Message   string         `json:"message"`
	Traceback []string       `json:"tb"`
	Args      []any          `json:"args"`
	Kwargs    map[string]any `json:"kwargs"`
}

func (e *RemoteError) Error() string {
	if e.Module != "" && e.Module != "builtins" && e.Module != "exceptions" {
		return fmt.Sprintf("remote %s.%s: %s", e.Module, e.Class, e.Message)
	}
	return fmt.Sprintf("remote %s: %s", e.Class, e.Message)
}

// remoteFailure turns a handler's error into the failure of a REPLY: a
// *RemoteError as it is, any other error as a RuntimeError.
func remoteFailure(err error) *RemoteError {
	var re *RemoteError
	if errors.As(err, &re) {
		out := *re
		if out.Args == nil {
			out.Args = []any{out.Message}
		}
		if out.Kwargs == nil {
			out.Kwargs = map[string]any{}
		}
		if out.Traceback == nil {
			out.Traceback = []string{}
		}
		return &out
	}
	return &RemoteError{Class: "RuntimeError", Module: "builtins", Message: err.Error(),
		Traceback: []string{}, Args: []any{err.Error()}, Kwargs: map[string]any{}}
}

// parseFailure reads the failure of a REPLY: null, or a JSON string that
// holds the exception object.
func parseFailure(raw json.RawMessage) (*RemoteError, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		// Tolerate an object where a string is expected.
		s = string(raw)
	}
	var re RemoteError
	if err := json.Unmarshal([]byte(s), &re); err != nil {
		return nil, fmt.Errorf("%w: failure %.64q: %w", ErrMalformed, s, err)
	}
	if re.Class == "" {
		re.Class = "Exception"
	}
	return &re, nil
}

// ErrBusy: every connected proxy's link is at its high-water mark.
var ErrBusy = errors.New("busy")
