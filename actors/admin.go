package actors

import (
	"sync"

	"github.com/zmq-proxy/zmq-proxy/transport"
)

// pauseGate holds the frontend's readers while the proxy is paused, as
// libzmq's zmq_proxy_steerable PAUSE does: nothing more is read from the
// clients, so their messages wait in their own queues and in the TCP
// buffers (bounded by the peers' high-water marks and the kernel), not
// in the proxy. Replies and ACKs on the backend flow on.
type pauseGate struct {
	mu     sync.Mutex
	paused bool
	resume chan struct{} // closed by Resume; replaced by Pause
}

func newPauseGate() *pauseGate {
	g := &pauseGate{resume: make(chan struct{})}
	close(g.resume)
	return g
}

// pause closes the gate; it reports whether it was open.
func (g *pauseGate) pause() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.paused {
		return false
	}
	g.paused = true
	g.resume = make(chan struct{})
	return true
}

// open opens the gate; it reports whether it was closed.
func (g *pauseGate) open() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.paused {
		return false
	}
	g.paused = false
	close(g.resume)
	return true
}

func (g *pauseGate) isPaused() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.paused
}

// wait blocks while the gate is closed. It returns true when the gate is
// open, false when closing is closed first (the socket is closing, and
// its readers must not be held).
func (g *pauseGate) wait(closing <-chan struct{}) bool {
	g.mu.Lock()
	resume := g.resume
	g.mu.Unlock()
	select {
	case <-resume:
		return true
	case <-closing:
		return false
	}
}

// gated wraps a socket's OnBatch so that it waits at the gate; a batch
// read while the socket closes is released unrouted.
func gated(g *pauseGate, closing <-chan struct{}, onBatch func(*transport.Batch)) func(*transport.Batch) {
	if g == nil {
		return onBatch
	}
	return func(b *transport.Batch) {
		if !g.wait(closing) {
			b.Release()
			return
		}
		onBatch(b)
	}
}

// Pause stops reading from the frontend (the clients' ROUTER; in a
// single-router proxy, its one ROUTER) until Resume. It reports whether
// the proxy was running. A local publisher proxy has no frontend: it
// reports false.
func (p *Proxy) Pause() bool {
	if p.pause == nil || !p.pause.pause() {
		return false
	}
	p.log.Info("paused: not reading from the frontend")
	return true
}

// Resume reads from the frontend again. It reports whether the proxy was
// paused.
func (p *Proxy) Resume() bool {
	if p.pause == nil || !p.pause.open() {
		return false
	}
	p.log.Info("resumed")
	return true
}

// Paused reports whether the proxy is paused.
func (p *Proxy) Paused() bool { return p.pause != nil && p.pause.isPaused() }

// SocketStats is one socket's counters, as GET /stats shows them.
type SocketStats struct {
	Received  uint64            `json:"received"`
	Routed    uint64            `json:"routed"`
	Published uint64            `json:"published"`
	Peers     int64             `json:"peers"`
	Dropped   map[string]uint64 `json:"dropped"`
	Refused   uint64            `json:"connections_refused"`
	Handshake uint64            `json:"handshakes_failed"`
}

// AllStats returns the counters of every socket the proxy has, by socket
// name (FrontendName, ...).
func (p *Proxy) AllStats() map[string]SocketStats {
	out := make(map[string]SocketStats, len(p.stats))
	for name, st := range p.stats {
		out[name] = SocketStats{
			Received:  st.Received.Load(),
			Routed:    st.Sent.Load(),
			Published: st.Published.Load(),
			Peers:     st.Peers.Load(),
			Dropped:   st.Dropped(),
			Refused:   st.Refused.Load(),
			Handshake: st.BadHandshake.Load(),
		}
	}
	return out
}
