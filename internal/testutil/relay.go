package testutil

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// Relay listens on a loopback port and relays each connection to target:
// the target's bytes go back to the client as they come, the client's go
// to the target through up (a plain copy when up is nil). It returns the
// address to dial, host:port. The listener, the connections and their
// goroutines end in t.Cleanup.
func Relay(t testing.TB, target string, up func(dst io.Writer, src io.Reader)) string {
	t.Helper()
	return RelayAfter(t, target, 0, up)
}

// RelayAfter is Relay that dials target delay after each connection is
// accepted: a server that answers late.
func RelayAfter(t testing.TB, target string, delay time.Duration, up func(dst io.Writer, src io.Reader)) string {
	t.Helper()
	if up == nil {
		up = func(dst io.Writer, src io.Reader) { io.Copy(dst, src) }
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	track := func(c net.Conn) {
		mu.Lock()
		defer mu.Unlock()
		conns = append(conns, c)
	}
	stop := make(chan struct{})
	t.Cleanup(func() {
		close(stop)
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			track(in)
			wg.Go(func() {
				if delay > 0 {
					select {
					case <-time.After(delay):
					case <-stop:
						return
					}
				}
				out, err := net.Dial("tcp", target)
				if err != nil {
					in.Close()
					return
				}
				track(out)
				wg.Go(func() {
					up(out, in)
					out.Close()
				})
				io.Copy(in, out)
				in.Close()
			})
		}
	})
	return ln.Addr().String()
}

// FlipFrame returns an up function for Relay that copies the 64-byte ZMTP
// greeting and then frame by frame, flipping the last byte of the body of
// frame number n after the greeting (counting from 0: on a CURVE
// connection HELLO is 0, INITIATE 1, the first MESSAGE 2). A frame
// announcing more than 16 MiB ends the copy.
func FlipFrame(n int) func(dst io.Writer, src io.Reader) {
	return func(dst io.Writer, src io.Reader) {
		r := bufio.NewReader(src)
		g := make([]byte, 64)
		if _, err := io.ReadFull(r, g); err != nil {
			return
		}
		if _, err := dst.Write(g); err != nil {
			return
		}
		for i := 0; ; i++ {
			hdr := make([]byte, 9)
			if _, err := io.ReadFull(r, hdr[:2]); err != nil {
				return
			}
			h, size := hdr[:2], uint64(hdr[1])
			if hdr[0]&0x02 != 0 { // the ZMTP LONG flag: an 8-byte size
				if _, err := io.ReadFull(r, hdr[2:9]); err != nil {
					return
				}
				h, size = hdr[:9], binary.BigEndian.Uint64(hdr[1:9])
			}
			if size > 1<<24 {
				return
			}
			body := make([]byte, size)
			if _, err := io.ReadFull(r, body); err != nil {
				return
			}
			if i == n && len(body) > 0 {
				body[len(body)-1] ^= 0x01
			}
			if _, err := dst.Write(append(h, body...)); err != nil {
				return
			}
		}
	}
}
