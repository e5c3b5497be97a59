// Package metrics exports the sockets' counters in the Prometheus format.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/zmq-proxy/zmq-proxy/transport"
)

var (
	descReceived = prometheus.NewDesc("zmqproxy_messages_received_total",
		"Messages read from peers of the socket.", []string{"socket"}, nil)
	descRouted = prometheus.NewDesc("zmqproxy_messages_routed_total",
		"Messages queued to a peer of the socket (for a PUB, one per subscriber copy).", []string{"socket"}, nil)
	descPublished = prometheus.NewDesc("zmqproxy_messages_published_total",
		"Messages published on the PUB socket, once each.", []string{"socket"}, nil)
	descDropped = prometheus.NewDesc("zmqproxy_messages_dropped_total",
		"Messages dropped, by reason.", []string{"socket", "reason"}, nil)
	descPeers = prometheus.NewDesc("zmqproxy_peers_connected",
		"Peers connected to the socket now.", []string{"socket"}, nil)
	descRefused = prometheus.NewDesc("zmqproxy_connections_refused_total",
		"Connections refused after the handshake (duplicate identity).", []string{"socket"}, nil)
	descBadHandshake = prometheus.NewDesc("zmqproxy_handshakes_failed_total",
		"Connections that failed the ZMTP greeting or handshake.", []string{"socket"}, nil)
	descProtocol = prometheus.NewDesc("zmqproxy_protocol_errors_total",
		"Connections closed for a ZMTP violation (for example a PING context over 16 bytes).", []string{"socket"}, nil)
	descRefusedBy = prometheus.NewDesc("zmqproxy_connections_refused_by_reason_total",
		"Connections closed before they became peers, by reason: max_connections, duplicate_identity, "+
			"greeting_timeout, handshake_limit, source_limit (a newer handshake took the slot), identity_too_long.",
		[]string{"socket", "reason"}, nil)
	descRefusedMax = prometheus.NewDesc("zmqproxy_connections_over_limit_total",
		"Connections closed after their handshake because --max-connections peers were connected.", []string{"socket"}, nil)
	descRefusedTopics = prometheus.NewDesc("zmqproxy_subscriptions_refused_total",
		"Subscriptions ignored because the subscriber held its limit of prefixes (count or bytes).", []string{"socket"}, nil)
	descAuthRefused = prometheus.NewDesc("zmqproxy_auth_refused_total",
		"PLAIN or CURVE handshakes refused for their credentials (also in handshakes_failed).", []string{"socket"}, nil)
	descAuthFlood = prometheus.NewDesc("zmqproxy_auth_flood_total",
		"PLAIN or CURVE handshakes turned away unchecked (also in handshakes_failed): reason=\"throttled\" over the CURVE HELLO rate limits or the PLAIN password-check queue, reason=\"replayed\" a CURVE HELLO seen before.", []string{"socket", "reason"}, nil)
	descDecryptFailed = prometheus.NewDesc("zmqproxy_decrypt_failed_total",
		"CURVE connections closed for a message that failed to decrypt.", []string{"socket"}, nil)
	descNacked = prometheus.NewDesc("zmqproxy_nacked_total",
		"NACKs sent: direct messages to an identity not connected, whose sender asked to be told.", []string{"socket"}, nil)
)

// Socket names a socket's counters.
type Socket struct {
	Name  string
	Stats *transport.Stats
}

// Collector reads the sockets' atomic counters at scrape time, so the hot
// path pays one atomic add per event and nothing for Prometheus.
type Collector struct {
	sockets []Socket
}

// NewCollector exports the given sockets.
func NewCollector(sockets ...Socket) *Collector { return &Collector{sockets: sockets} }

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descReceived, descRouted, descPublished, descDropped, descPeers, descRefused, descRefusedBy, descBadHandshake, descProtocol, descRefusedMax, descRefusedTopics, descAuthRefused, descAuthFlood, descDecryptFailed, descNacked} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for _, s := range c.sockets {
		st := s.Stats
		counter(descReceived, st.Received.Load(), s.Name)
		counter(descRouted, st.Sent.Load(), s.Name)
		counter(descPublished, st.Published.Load(), s.Name)
		for reason, n := range st.Dropped() {
			counter(descDropped, n, s.Name, reason)
		}
		counter(descRefused, st.Refused.Load(), s.Name)
		for reason, n := range st.Refusals() {
			counter(descRefusedBy, n, s.Name, reason)
		}
		counter(descBadHandshake, st.BadHandshake.Load(), s.Name)
		counter(descProtocol, st.ProtocolErrors.Load(), s.Name)
		counter(descRefusedMax, st.RefusedMaxConns.Load(), s.Name)
		counter(descRefusedTopics, st.RefusedTopics.Load(), s.Name)
		counter(descAuthRefused, st.AuthRefused.Load(), s.Name)
		counter(descAuthFlood, st.AuthThrottled.Load(), s.Name, "throttled")
		counter(descAuthFlood, st.AuthReplayed.Load(), s.Name, "replayed")
		counter(descDecryptFailed, st.DecryptFailed.Load(), s.Name)
		counter(descNacked, st.Nacked.Load(), s.Name)
		ch <- prometheus.MustNewConstMetric(descPeers, prometheus.GaugeValue, float64(st.Peers.Load()), s.Name)
	}
}
