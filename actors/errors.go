package actors

import "errors"

var (
	// ErrConfig wraps every configuration error.
	ErrConfig = errors.New("invalid configuration")
	// ErrNotImplemented is returned for a proxy kind that is not built yet.
	ErrNotImplemented = errors.New("not implemented yet")
	// ErrClosed is returned by operations on a closed proxy.
	ErrClosed = errors.New("proxy closed")
)
