package actors

// The admin side of the proxy: Pause, Resume and the counters. The gate
// that Pause closes stands on the CAST path, where the frontend's readers
// route what they read (pauseGate, routerActor.route in router.go).

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
