// Package etcdserver runs the registry's etcd when nobody gave one: an
// embedded single-member etcd (go.etcd.io/etcd/server/v3/embed) on loopback,
// so that one command gives a working system.
//
// Start starts one; Probe tells what answers on an address; Local does what
// the daemon does without a URL: use the etcd that answers on the local
// address, or start an embedded one there, or say clearly what to do when
// something else holds the port.
//
// Built with the tag noembedetcd, the package has no embedded etcd (and
// etcd's server code is not linked): Start fails with ErrNoEmbedded, and
// Local only uses an etcd that answers. See embed.go and noembed.go.
package etcdserver

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"
)

// Defaults of Options.
const (
	DefaultClientAddr   = "127.0.0.1:2379"
	DefaultPeerAddr     = "127.0.0.1:2380"
	DefaultName         = "zmq-proxy"
	DefaultReadyTimeout = 30 * time.Second
)

// randomPortAttempts bounds how often Start picks new random ports when a
// picked port was taken before etcd could bind it.
const randomPortAttempts = 3

// Options configure an embedded etcd. The zero value, with a DataDir, is a
// member on 127.0.0.1:2379 (clients) and 127.0.0.1:2380 (peers).
type Options struct {
	// ClientAddr is host:port for clients; default "127.0.0.1:2379".
	// Port 0 means random free ports, for the client and, unless PeerAddr
	// names a port, for the peer address too.
	ClientAddr string
	// PeerAddr is host:port for peers; default "127.0.0.1:2380", or a
	// random free port if ClientAddr's port is 0. Port 0 means a random
	// free port.
	PeerAddr string
	// DataDir is where the member's data lives; required for Start.
	// It is created (mode 0700) if missing.
	DataDir string
	// Name is the member name; default "zmq-proxy".
	Name string
	// Logger receives this package's logs and etcd's own at error level
	// (etcd's lower levels are dropped); nil means slog.Default().
	Logger *slog.Logger
	// ReadyTimeout bounds how long Start waits for etcd to serve;
	// default 30 s.
	ReadyTimeout time.Duration
	// BcryptCost is the cost of the hashes of users' passwords; 0 means
	// etcd's default (10). Tests give bcrypt.MinCost (4): at the default,
	// each login costs tens of milliseconds of CPU, seconds on a loaded
	// machine with the race detector.
	BcryptCost int
}

// withDefaults returns o with its empty fields set to their defaults.
func (o Options) withDefaults() Options {
	if o.ClientAddr == "" {
		o.ClientAddr = DefaultClientAddr
	}
	if o.PeerAddr == "" {
		// The port after the client port (2379 -> 2380, etcd's pair), so
		// that a registry moved with --etcd-addr moves whole; random if the
		// client port is.
		o.PeerAddr = DefaultPeerAddr
		if host, port, err := net.SplitHostPort(o.ClientAddr); err == nil {
			if p, err := strconv.Atoi(port); err == nil && p < 65535 {
				next := p + 1
				if p == 0 {
					next = 0
				}
				o.PeerAddr = net.JoinHostPort(host, strconv.Itoa(next))
			}
		}
	}
	if o.Name == "" {
		o.Name = DefaultName
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.ReadyTimeout <= 0 {
		o.ReadyTimeout = DefaultReadyTimeout
	}
	return o
}

// Validate checks the options as Start would use them, defaults applied.
func (o Options) Validate() error {
	o = o.withDefaults()
	if o.DataDir == "" {
		return ErrNoDataDir
	}
	for _, a := range []struct{ what, addr string }{{"client", o.ClientAddr}, {"peer", o.PeerAddr}} {
		if _, err := splitLoopback(a.addr); err != nil {
			return fmt.Errorf("%s address: %w", a.what, err)
		}
	}
	if p, _ := splitLoopback(o.ClientAddr); p != 0 && o.ClientAddr == o.PeerAddr {
		return fmt.Errorf("client and peer address are both %s: %w", o.ClientAddr, ErrBadAddr)
	}
	return nil
}

// splitLoopback checks that addr is a loopback IP (or "localhost") with a
// numeric port and returns the port.
func splitLoopback(addr string) (int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, fmt.Errorf("%q: %w: %v", addr, ErrBadAddr, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("%q: %w: port %q", addr, ErrBadAddr, portStr)
	}
	if host != "localhost" {
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			return 0, fmt.Errorf("%q: %w", addr, ErrNotLoopback)
		}
	}
	return int(port), nil
}

// Start starts an embedded single-member etcd listening on loopback only,
// waits until it serves (at most opts.ReadyTimeout) and returns it. The
// caller closes it. etcd's own logs go to opts.Logger at error level only.
//
// If a port is taken, the error wraps ErrPortInUse. Addresses with port 0
// get random free ports; if one is taken before etcd binds it, Start picks
// again, a few times.
func Start(opts Options) (*Server, error) {
	o := opts.withDefaults()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	clientPort, _ := splitLoopback(o.ClientAddr)
	peerPort, _ := splitLoopback(o.PeerAddr)
	random := clientPort == 0 || peerPort == 0
	var err error
	for range randomPortAttempts {
		var client, peer string
		if client, peer, err = pickPorts(o.ClientAddr, o.PeerAddr); err != nil {
			return nil, err
		}
		var s *Server
		s, err = start(o, client, peer)
		if err == nil {
			return s, nil
		}
		if !random || !errors.Is(err, ErrPortInUse) {
			break
		}
	}
	return nil, err
}

// pickPorts replaces port 0 in the client and peer addresses with free
// ports. The ports are free when picked; etcd binds them a moment later.
func pickPorts(client, peer string) (string, string, error) {
	var out [2]string
	var held []net.Listener
	defer func() {
		for _, l := range held {
			l.Close()
		}
	}()
	for i, addr := range []string{client, peer} {
		out[i] = addr
		host, port, _ := net.SplitHostPort(addr)
		if port != "0" {
			continue
		}
		// Hold each picked port until both are picked, so that the two
		// differ.
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return "", "", fmt.Errorf("pick a free port on %s: %w", host, err)
		}
		held = append(held, l)
		out[i] = net.JoinHostPort(host, strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
	}
	return out[0], out[1], nil
}

// Endpoints returns the client URL of the member, "http://127.0.0.1:PORT",
// as clientv3.Config.Endpoints takes it. (The v3 client also accepts a bare
// host:port; the scheme states that the connection is plain text.)
func (s *Server) Endpoints() []string { return []string{"http://" + s.clientAddr} }

// ClientAddr returns the host:port the member serves clients on, with the
// port actually bound.
func (s *Server) ClientAddr() string { return s.clientAddr }

// PeerAddr returns the host:port the member listens on for peers.
func (s *Server) PeerAddr() string { return s.peerAddr }

// DataDir returns the member's data directory.
func (s *Server) DataDir() string { return s.dataDir }
