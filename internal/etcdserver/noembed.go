//go:build noembedetcd

package etcdserver

import "fmt"

// This build (tag noembedetcd) has no embedded etcd: etcd's server packages
// are not linked, and Start fails with ErrNoEmbedded. Local still uses an
// etcd that answers on its address. embed.go is the other build.

// Server would be a running embedded etcd member; this build never makes
// one.
type Server struct {
	clientAddr string
	peerAddr   string
	dataDir    string
}

// start fails: this build has no embedded etcd.
func start(o Options, client, _ string) (*Server, error) {
	return nil, fmt.Errorf("no etcd answers on %s, and this zmq-proxy was built without the embedded etcd "+
		"(-tags noembedetcd): start one there, or give a registry with -u zmq+etcd://host:port/ or zmq+redis://host:port: %w",
		client, ErrNoEmbedded)
}

// BcryptCost returns 0.
func (s *Server) BcryptCost() int { return 0 }

// Err returns nil: there is no member to fail.
func (s *Server) Err() <-chan error { return nil }

// Close does nothing.
func (s *Server) Close() error { return nil }
