package transport

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/go-zeromq/zmq4"
)

// tcpPair is a connected pair of TCP connections on loopback.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// A message to an idle peer is written by the sender itself: with no
// writer goroutine running at all, it arrives.
func TestSendWritesDirectlyWhenIdle(t *testing.T) {
	s := newSocket(zmq4.Dealer, testOptions(Options{}), nil)
	c, srv := tcpPair(t)
	p := newPeer(s, nil, c) // no writeLoop
	if p.raw == nil {
		t.Fatal("a TCP peer has no raw connection for direct writes")
	}
	msg := frames("", "1.0", "2", "key", "id", "payload")
	if !p.sendNow(msg, nil) {
		t.Fatal("sendNow to an idle peer: got false")
	}
	want := appendMsg(nil, msg, nil)
	got := make([]byte, len(want))
	if _, err := io.ReadFull(srv, got); err != nil {
		t.Fatalf("read the direct write: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	if n, b, _ := p.queuedNow(); n != 0 || b != 0 {
		t.Fatalf("queue after the direct write: got %d messages, %d bytes, want empty", n, b)
	}
}

// When the kernel takes only part of a direct write, the rest goes back to
// the front of the queue, before what is queued after it, and the writer
// sends it: the bytes arrive complete and in order.
func TestDirectWriteRestGoesToTheWriter(t *testing.T) {
	s := newSocket(zmq4.Dealer, testOptions(Options{HWM: 1000, HWMBytes: 128 << 20}), nil)
	c, srv := tcpPair(t)
	p := newPeer(s, nil, c)
	big := bytes.Repeat([]byte("b"), 16<<20) // more than loopback's socket buffers hold
	var want []byte
	for i := range 3 {
		msg := [][]byte{[]byte(fmt.Sprint(i)), big}
		if !p.sendNow(msg, nil) {
			t.Fatalf("sendNow %d: got false", i)
		}
		want = appendMsg(want, msg, nil)
	}
	if _, b, _ := p.queuedNow(); b == 0 {
		t.Fatal("queue after 48 MiB to a peer that does not read: got empty, want the rest of the first write and the others")
	}
	writerDone := make(chan error, 1)
	go func() { writerDone <- p.writeLoop() }()
	p.signal()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(srv, got); err != nil {
		t.Fatalf("read: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("the bytes that arrived differ from the three messages sent, in order")
	}
	p.shutdown()
	if err := <-writerDone; err != nil {
		t.Fatalf("writer: %v", err)
	}
}
