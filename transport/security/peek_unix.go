//go:build unix

package security

import (
	"errors"
	"net"
	"syscall"
)

// peerGone reports whether conn's peer has closed or reset the
// connection, without reading anything from it: a non-blocking peek. A
// connection it cannot look into is taken as open.
func peerGone(conn net.Conn) bool {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	gone := false
	var b [1]byte
	if err := raw.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.EINTR):
		case err != nil:
			gone = true // reset, or any other error: nothing to answer
		case n == 0:
			gone = true // end of stream: the peer closed
		}
		return true
	}); err != nil {
		return true
	}
	return gone
}
