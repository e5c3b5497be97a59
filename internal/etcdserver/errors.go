package etcdserver

import "errors"

// Sentinel errors of this package. They are wrapped with %w: test them with
// errors.Is.
var (
	// ErrNothingListening: nothing accepts connections on the address
	// (connection refused).
	ErrNothingListening = errors.New("nothing listening")

	// ErrNotEtcd: something accepts connections on the address but does not
	// answer etcd's gRPC maintenance Status call (an HTTP server, some other
	// TCP service, or an etcd too busy to answer within the timeout).
	ErrNotEtcd = errors.New("not etcd")

	// ErrPortInUse: the embedded etcd could not bind its client or peer
	// address because something else holds it.
	ErrPortInUse = errors.New("port in use")

	// ErrNotReady: the embedded etcd did not become ready within
	// Options.ReadyTimeout.
	ErrNotReady = errors.New("embedded etcd not ready")

	// ErrNoDataDir: Options.DataDir is empty; Start needs one.
	ErrNoDataDir = errors.New("no data dir")

	// ErrNotLoopback: an address is not on a loopback interface; the
	// embedded etcd has no authentication, so it listens on loopback only.
	ErrNotLoopback = errors.New("not a loopback address")

	// ErrBadAddr: an address is not host:port with a numeric port.
	ErrBadAddr = errors.New("bad address")

	// ErrNoEmbedded: the program was built with the tag noembedetcd, without
	// the embedded etcd, and no etcd answers on the address.
	ErrNoEmbedded = errors.New("built without the embedded etcd")
)
