package e2e

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// The proxy's memory is bounded whatever a peer sends: these tests attack
// it with raw ZMTP and watch its RSS from /proc.

// memGrowthBound is how much the proxy's RSS may grow under one attack:
// the attacks below would each take hundreds of MiB to GiBs from a proxy
// that queued or allocated what the peer asked for.
const memGrowthBound = 64 << 20

// zmtpConn dials endpoint and completes a ZMTP 3.0 NULL handshake as a
// socketType with identity id. Its reads and writes fail after a deadline
// of peerTimeout, so nothing in the test hangs.
func zmtpConn(endpoint, socketType, id string) (net.Conn, error) {
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(endpoint, "tcp://"), peerTimeout)
	if err != nil {
		return nil, err
	}
	if err := conn.SetDeadline(time.Now().Add(peerTimeout)); err != nil {
		conn.Close()
		return nil, err
	}
	greeting := make([]byte, 64)
	greeting[0], greeting[9], greeting[10] = 0xFF, 0x7F, 3
	copy(greeting[12:], "NULL")
	ready := []byte{5}
	ready = append(ready, "READY"...)
	for _, kv := range [][2]string{{"Socket-Type", socketType}, {"Identity", id}} {
		ready = append(ready, byte(len(kv[0])))
		ready = append(ready, kv[0]...)
		ready = binary.BigEndian.AppendUint32(ready, uint32(len(kv[1])))
		ready = append(ready, kv[1]...)
	}
	out := append(greeting, 0x04, byte(len(ready)))
	out = append(out, ready...)
	if _, err := conn.Write(out); err != nil {
		conn.Close()
		return nil, err
	}
	in := make([]byte, 64+2)
	if _, err := io.ReadFull(conn, in); err != nil {
		conn.Close()
		return nil, fmt.Errorf("read greeting: %w", err)
	}
	if _, err := io.ReadFull(conn, make([]byte, in[65])); err != nil { // the proxy's READY
		conn.Close()
		return nil, fmt.Errorf("read READY: %w", err)
	}
	return conn, conn.SetDeadline(time.Time{})
}

// zmtpCommand is a command frame.
func zmtpCommand(name string, data []byte) []byte {
	body := append([]byte{byte(len(name))}, name...)
	body = append(body, data...)
	if len(body) > 255 {
		return append(binary.BigEndian.AppendUint64([]byte{0x06}, uint64(len(body))), body...)
	}
	return append([]byte{0x04, byte(len(body))}, body...)
}

// sampleRSS records the proxy's RSS growth over its value at the first
// sample.
type sampleRSS struct {
	t         *testing.T
	p         *proxy
	base, max int64
}

func (s *sampleRSS) sample() {
	r := s.p.rssBytes(s.t)
	if s.base == 0 {
		s.base = r
	}
	s.max = max(s.max, r)
}

func (s *sampleRSS) check(what string) {
	s.t.Helper()
	grew := s.max - s.base
	s.t.Logf("%s: proxy RSS from %d MiB to at most %d MiB (growth %d MiB)", what, s.base>>20, s.max>>20, grew>>20)
	if grew > memGrowthBound {
		s.t.Errorf("%s: proxy RSS grew by %d MiB, want less than %d MiB", what, grew>>20, memGrowthBound>>20)
	}
}

// A peer that sends PINGs for 5 s and never reads: with RFC 37's 16-byte
// contexts the proxy keeps one PONG for it; with 60 KiB contexts each
// connection is closed at its first PING (a protocol error) and the peer
// dials again. Either way the proxy's RSS stays flat.
func TestPingFloodMemoryBounded(t *testing.T) {
	if isRef() {
		t.Skip("ZP_REF: the test reads our metrics")
	}
	for _, tc := range []struct {
		name    string
		context int
		metric  []string // a counter that must have moved
	}{
		{name: "16-byte context", context: 16, metric: []string{dropped, "socket", "frontend", "reason", "pong"}},
		{name: "60 KiB context", context: 60 << 10, metric: []string{"zmqproxy_protocol_errors_total", "socket", "frontend"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startProxy(t, proxyOpts{plain: true})
			rss := &sampleRSS{t: t, p: p}
			rss.sample()
			ping := zmtpCommand("PING", append([]byte{0, 100}, bytes.Repeat([]byte("c"), tc.context)...))
			burst := bytes.Repeat(ping, max(1, (256<<10)/len(ping)))
			var conn net.Conn
			dials, sent := 0, 0
			end := time.Now().Add(5 * time.Second)
			for time.Now().Before(end) {
				if conn == nil {
					c, err := zmtpConn(p.frontend, "DEALER", "")
					if err != nil {
						t.Fatalf("dial the frontend: %v", err)
					}
					conn, dials = c, dials+1
				}
				_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
				n, err := conn.Write(burst)
				sent += n
				if err != nil {
					// Closed by the proxy (a protocol error), or a write
					// that waited a second: dial again.
					conn.Close()
					conn = nil
				}
				rss.sample()
			}
			if conn != nil {
				conn.Close()
			}
			t.Logf("%d bytes of PINGs sent over %d connections", sent, dials)
			rss.sample()
			rss.check(tc.name)
			p.waitMetric(t, func(v float64) bool { return v > 0 }, "> 0", tc.metric[0], tc.metric[1:]...)
			p.alive(t)
		})
	}
}

// Three rounds of 100 connections that each declare a 16 MiB frame and
// send 1 KiB of it: the proxy holds what arrived, not what was declared,
// so its RSS stays flat (a reader that allocated the declared size would
// make 1.6 GiB resident as freed memory is reused and zeroed).
func TestDeclaredFrameSizeMemoryBounded(t *testing.T) {
	if isRef() {
		t.Skip("ZP_REF: the test reads our metrics")
	}
	const conns, rounds = 100, 3
	p := startProxy(t, proxyOpts{plain: true})
	rss := &sampleRSS{t: t, p: p}
	rss.sample()
	header := binary.BigEndian.AppendUint64([]byte{0x02}, 16<<20-64)
	part := append(header, make([]byte, 1<<10)...)
	for round := range rounds {
		var open []net.Conn
		for i := range conns {
			c, err := zmtpConn(p.frontend, "DEALER", fmt.Sprintf("big-%d-%d", round, i))
			if err != nil {
				t.Fatalf("round %d: dial %d: %v", round, i, err)
			}
			open = append(open, c)
			if _, err := c.Write(part); err != nil {
				t.Fatalf("round %d: write %d: %v", round, i, err)
			}
		}
		p.waitMetric(t, func(v float64) bool { return v == conns }, fmt.Sprint(conns), peers, "socket", "frontend")
		// Watch the RSS for a second while the frames stay incomplete
		// (this is the measurement, not a wait for a condition).
		for range 10 {
			rss.sample()
			<-time.After(100 * time.Millisecond)
		}
		for _, c := range open {
			c.Close()
		}
		p.waitMetric(t, func(v float64) bool { return v == 0 }, "0", peers, "socket", "frontend")
	}
	rss.sample()
	rss.check(fmt.Sprintf("%d rounds of %d connections declaring 16 MiB frames", rounds, conns))
	p.alive(t)
}
