package testutil

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"
)

// echoServer accepts connections on loopback and echoes what they send.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		io.Copy(c, c)
		c.Close()
	}()
	return ln.Addr().String()
}

// RelayAfter dials the target only after its delay, and then relays both
// ways; FlipFrame flips the last byte of the chosen frame only.
func TestRelayAfterDelaysAndFlips(t *testing.T) {
	const delay = 300 * time.Millisecond
	addr := RelayAfter(t, echoServer(t), delay, FlipFrame(1))
	start := time.Now() // before the dial: the relay's delay runs from its accept
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	greeting := bytes.Repeat([]byte{7}, 64)
	long := bytes.Repeat([]byte{'l'}, 300)
	var sent []byte
	sent = append(sent, greeting...)
	sent = append(sent, 0, 3, 'a', 'b', 'c') // frame 0, short
	sent = append(sent, 0x02)                // frame 1, long
	sent = binary.BigEndian.AppendUint64(sent, uint64(len(long)))
	sent = append(sent, long...)
	sent = append(sent, 0, 3, 'x', 'y', 'z') // frame 2
	if _, err := c.Write(sent); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(sent))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took < delay {
		t.Errorf("echo after %v, want at least the relay's delay %v", took, delay)
	}
	want := bytes.Clone(sent)
	want[64+5+9+len(long)-1] ^= 0x01
	if !bytes.Equal(got, want) {
		t.Errorf("relayed %q, want %q (the last byte of frame 1 flipped)", got, want)
	}
}
