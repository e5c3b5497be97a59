package actors

import (
	"context"
	"time"
)

// Drain defaults.
const (
	// DefaultDrainTimeout bounds a drain: --drain-timeout's default.
	DefaultDrainTimeout = 5 * time.Second
	// DrainQuiet is how long the peers must send nothing for a drain to
	// end before its timeout.
	DrainQuiet = time.Second
	// drainPoll is how often a drain looks at the counters.
	drainPoll = 20 * time.Millisecond
)

// How a drain ended (DrainReport.Reason).
const (
	DrainNoPeers     = "no peers"    // every peer had disconnected
	DrainQuietPeers  = "quiet"       // the peers sent nothing for DrainQuiet
	DrainTimedOut    = "timeout"     // the timeout passed first
	DrainInterrupted = "interrupted" // ctx was done first (a second signal)
	DrainLocal       = "local"       // a local publisher proxy: nothing to wait for
)

// DrainReport says what a drain did.
type DrainReport struct {
	Reason       string        // DrainNoPeers, DrainQuietPeers, DrainTimedOut or DrainInterrupted
	Deregistered bool          // the record was deleted from the registry
	PeersBefore  int64         // peers connected when the drain started
	PeersAfter   int64         // peers connected when it ended
	Routed       uint64        // messages routed and published during it
	Took         time.Duration // from the start, record deletion included
}

// Drain takes the proxy out of service before Close, so that what is in
// flight is not lost:
//
//  1. its registry record is deleted (the registrar stops and revokes its
//     lease): clients and servers that watch the registry stop sending
//     through this proxy and disconnect from it;
//  2. it keeps routing what its connected peers still send (replies and
//     ACKs of requests already in flight) until no peer is connected, or
//     the peers have sent nothing for DrainQuiet, or timeout passes, or ctx
//     is done, whichever comes first.
//
// Once out of the registry, the bound sockets accept no new connection
// (the kernel refuses it); the connected peers go on. A local publisher proxy
// only leaves the registry: it routes nothing back. Call Close after it.
func (p *Proxy) Drain(ctx context.Context, timeout time.Duration) DrainReport {
	start := time.Now()
	r := DrainReport{PeersBefore: p.sumStats().peers}
	if p.registrar != nil {
		if err := p.system.Root.StopFuture(p.registrar).Wait(); err == nil {
			r.Deregistered = true
			p.log.Info("drain: left the registry", "took", time.Since(start).Round(time.Millisecond))
		} else {
			p.log.Warn("drain: the registrar did not stop; the record expires with its lease", "err", err)
		}
	}
	p.stopAccepting()
	before := p.sumStats()
	r.Reason = DrainTimedOut
	if p.cfg.Kind == KindLocalPublisher {
		r.Reason = DrainLocal
		timeout = 0
	}
	deadline := time.NewTimer(max(timeout, 0))
	defer deadline.Stop()
	tick := time.NewTicker(drainPoll)
	defer tick.Stop()
	last, lastAt := before.received, time.Now()
wait:
	for timeout > 0 {
		now := p.sumStats()
		switch {
		case now.peers == 0:
			r.Reason = DrainNoPeers
			break wait
		case now.received != last:
			last, lastAt = now.received, time.Now()
		case time.Since(lastAt) >= DrainQuiet:
			r.Reason = DrainQuietPeers
			break wait
		}
		select {
		case <-ctx.Done():
			r.Reason = DrainInterrupted
			break wait
		case <-deadline.C:
			r.Reason = DrainTimedOut
			break wait
		case <-tick.C:
		}
	}
	after := p.sumStats()
	r.PeersAfter = after.peers
	r.Routed = after.routed - before.routed
	r.Took = time.Since(start)
	return r
}

// statsSum is the proxy's counters, summed over its sockets.
type statsSum struct {
	peers    int64
	received uint64 // messages read from peers
	routed   uint64 // messages queued to peers, and published
}

func (p *Proxy) sumStats() statsSum {
	var s statsSum
	for _, st := range p.stats {
		s.peers += st.Peers.Load()
		s.received += st.Received.Load()
		s.routed += st.Sent.Load() + st.Published.Load()
	}
	return s
}

// stopAccepting has every bound socket's actor close its listener, and
// waits (a moment at most) until they have.
func (p *Proxy) stopAccepting() {
	p.notAccepting.Store(true) // and so do those that restart from now on
	for _, name := range []string{FrontendName, BackendName, PublisherName} {
		if _, ok := p.stats[name]; !ok {
			continue // the proxy has no such socket
		}
		msg := &stopAccepting{done: make(chan struct{})}
		p.system.Root.Send(p.system.NewLocalPID(supervisorName+"/"+name), msg)
		select {
		case <-msg.done:
		case <-time.After(time.Second): // restarting: it binds again without accepting
			p.log.Warn("drain: a socket did not stop accepting", "socket", name)
		}
	}
}
