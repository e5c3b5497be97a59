package actors

import "errors"

var (
	// ErrConfig wraps every configuration error.
	ErrConfig = errors.New("invalid configuration")
	// ErrClosed is returned by operations on a closed proxy.
	ErrClosed = errors.New("proxy closed")
)
