// Package addr parses and classifies the host:port addresses the proxy
// listens on and its commands dial: listener addresses, peer addresses,
// ZeroMQ tcp:// endpoints, and whether an address is loopback only.
package addr

import (
	"net"
	"strings"
)

// Loopback reports whether hostport (a Host header, or an address) names
// a loopback address: 127.0.0.0/8, ::1 or "localhost".
func Loopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = strings.Trim(hostport, "[]")
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
