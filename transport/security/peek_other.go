//go:build !unix

package security

import "net"

// peerGone cannot look into a connection here: it is taken as open.
func peerGone(net.Conn) bool { return false }
