package etcdserver

import (
	"context"
	"errors"
	"time"
)

// raceWait bounds how long Local, having lost the race to start the
// embedded etcd, waits for the winner's etcd to answer.
const raceWait = 15 * time.Second

// racePoll is how often Local probes again while the winner of that race
// has bound its peer port but not yet its client port.
const racePoll = 20 * time.Millisecond

// Local gives the endpoints of a local etcd, as the daemon does when no URL
// is given:
//
//   - if an etcd answers on opts.ClientAddr, it is used (srv == nil);
//   - if nothing listens there, an embedded etcd is started there
//     (srv != nil; the caller closes it);
//   - if something that is not etcd holds the port, the error is one line
//     that says what to do; it wraps ErrPortInUse and ErrNotEtcd.
//
// Two processes may start at once (a central and a local proxy): the one
// whose Start fails because the other just took the port probes again and
// uses the etcd that won. With port 0 in opts.ClientAddr there is nothing to
// probe: Local starts an embedded etcd on random ports.
//
// Local logs at info level what it did: "using etcd" or "started embedded
// etcd", with the address and, for the latter, the data dir.
func Local(ctx context.Context, opts Options) (endpoints []string, srv *Server, err error) {
	o := opts.withDefaults()
	if err := o.Validate(); err != nil {
		return nil, nil, err
	}
	port, _ := splitLoopback(o.ClientAddr)
	if port != 0 {
		if eps, err := o.probeClientAddr(ctx); !errors.Is(err, ErrNothingListening) {
			return eps, nil, err
		}
	}

	srv, err = Start(o)
	if err == nil {
		o.Logger.Info("started embedded etcd", "addr", srv.ClientAddr(), "peer_addr", srv.PeerAddr(), "data_dir", srv.DataDir())
		return srv.Endpoints(), srv, nil
	}
	if port == 0 || !errors.Is(err, ErrPortInUse) {
		return nil, nil, err
	}

	// Lost a race, or the peer port is held by something else. The winner
	// binds its peer port first and serves a moment after binding its
	// client port; Probe waits for a connection that is being set up.
	startErr := err
	ctx, cancel := context.WithTimeout(ctx, raceWait)
	defer cancel()
	for {
		eps, err := o.probeClientAddr(ctx)
		var inUse *inUseError
		if err == nil || errors.As(err, &inUse) {
			return eps, nil, err
		}
		if !errors.Is(err, ErrNothingListening) {
			return nil, nil, startErr
		}
		t := time.NewTimer(racePoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, nil, startErr
		case <-t.C:
		}
	}
}

// probeClientAddr says what answers on o.ClientAddr: an etcd (its
// endpoints, logged by use), something that is not etcd (an
// *inUseError), nothing (an error wrapping ErrNothingListening), or
// Probe's other errors.
func (o Options) probeClientAddr(ctx context.Context) ([]string, error) {
	err := Probe(ctx, o.ClientAddr)
	switch {
	case err == nil:
		return o.use(), nil
	case errors.Is(err, ErrNotEtcd):
		return nil, &inUseError{addr: o.ClientAddr, cause: err}
	}
	return nil, err
}

// use logs and returns the endpoints of the etcd found on o.ClientAddr.
func (o Options) use() []string {
	o.Logger.Info("using etcd", "addr", o.ClientAddr)
	return []string{"http://" + o.ClientAddr}
}

// inUseError is Local's answer when something that is not etcd holds the
// client port.
type inUseError struct {
	addr  string
	cause error // from Probe; wraps ErrNotEtcd
}

func (e *inUseError) Error() string {
	return e.addr + " is in use by something that is not etcd: stop it, or give an etcd with -u zmq+etcd://host:port/ (" + e.cause.Error() + ")"
}

func (e *inUseError) Unwrap() []error { return []error{ErrPortInUse, e.cause} }
