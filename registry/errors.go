package registry

import "errors"

var (
	// ErrBadRecord: a record that cannot be stored or read back.
	ErrBadRecord = errors.New("bad registry record")
	// ErrClosed: the registrar is closed.
	ErrClosed = errors.New("registrar closed")
	// ErrBadURL: a registry URL that is not zmq+etcd://host:port[,...]/.
	ErrBadURL = errors.New("bad registry url")
	// ErrNoAnswer: no etcd endpoint answered NewClient within its
	// DialTimeout.
	ErrNoAnswer = errors.New("no answer from etcd")
)
