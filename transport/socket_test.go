package transport

import (
	"io"
	"net"
	"testing"
	"time"
)

func TestParseEndpoint(t *testing.T) {
	tests := []struct {
		name    string
		ep      string
		want    string
		wantErr bool
	}{
		{name: "tcp with host", ep: "tcp://127.0.0.1:5555", want: "127.0.0.1:5555"},
		{name: "bare host:port", ep: "127.0.0.1:0", want: "127.0.0.1:0"},
		{name: "wildcard host", ep: "tcp://*:5555", want: ":5555"},
		{name: "ipv6", ep: "tcp://[::1]:5555", want: "[::1]:5555"},
		{name: "hostname", ep: "tcp://localhost:1", want: "localhost:1"},
		{name: "other transport", ep: "ipc:///tmp/x", wantErr: true},
		{name: "no port", ep: "tcp://127.0.0.1", wantErr: true},
		{name: "empty", ep: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseEndpoint(tt.ep)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err: got %v, want error %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestBindErrors(t *testing.T) {
	r := startRouter(t, Options{})
	tests := []struct {
		name string
		ep   string
	}{
		{name: "address in use", ep: r.Addr()},
		{name: "bad endpoint", ep: "udp://127.0.0.1:0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r2 := NewRouter(testOptions(Options{}))
			t.Cleanup(func() { r2.Close() })
			if err := r2.Bind(tt.ep); err == nil {
				t.Fatalf("Bind(%q): got nil, want an error", tt.ep)
			}
			if got := r2.Addr(); got != "" {
				t.Fatalf("Addr after a failed Bind: got %q, want \"\"", got)
			}
		})
	}
	d := NewDealer(testOptions(Options{}))
	t.Cleanup(func() { d.Close() })
	if err := d.Connect("ipc:///tmp/x"); err == nil {
		t.Fatalf("Connect(ipc://): got nil, want an error")
	}
}

func TestCloseTwiceAndBindAfterClose(t *testing.T) {
	r := NewRouter(testOptions(Options{}))
	if err := r.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := r.Bind(anyPort); err == nil {
		t.Fatalf("Bind after Close: got nil, want an error")
	}
}

// closeWithin runs close and fails the test if it has not returned
// within wait (the handshake timeout of these tests is ten times that).
func closeWithin(t *testing.T, what string, closeFn func() error) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		closeFn()
	}()
	select {
	case <-done:
	case <-time.After(wait):
		t.Errorf("%s: Close still waiting after %v for a stalled handshake", what, wait)
		<-done
	}
}

// TestCloseDuringHandshake: Close does not wait for the handshake timeout
// of a peer that stalls in the middle of its handshake.
func TestCloseDuringHandshake(t *testing.T) {
	t.Run("binding side", func(t *testing.T) {
		r := NewRouter(testOptions(Options{HandshakeTimeout: 10 * wait}))
		t.Cleanup(func() { r.Close() })
		if err := r.Bind(anyPort); err != nil {
			t.Fatal(err)
		}
		conn := dialTCP(t, r.Addr(), 0)
		// The router's greeting shows its handshake is under way; then
		// the client says nothing.
		if err := conn.SetReadDeadline(time.Now().Add(wait)); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(conn, make([]byte, 64)); err != nil {
			t.Fatalf("reading the router's greeting: %v", err)
		}
		closeWithin(t, "router", r.Close)
	})
	t.Run("connecting side", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		accepted := make(chan net.Conn, 1)
		go func() {
			c, err := ln.Accept()
			if err == nil {
				accepted <- c
			}
			close(accepted)
		}()
		d := NewDealer(testOptions(Options{HandshakeTimeout: 10 * wait}))
		t.Cleanup(func() { d.Close() })
		if err := d.Connect("tcp://" + ln.Addr().String()); err != nil {
			t.Fatal(err)
		}
		var server net.Conn
		select {
		case server = <-accepted:
		case <-time.After(wait):
			t.Fatalf("the dealer did not connect within %v", wait)
		}
		t.Cleanup(func() { server.Close() })
		// The dealer's greeting shows its handshake is under way.
		if err := server.SetReadDeadline(time.Now().Add(wait)); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(server, make([]byte, 64)); err != nil {
			t.Fatalf("reading the dealer's greeting: %v", err)
		}
		closeWithin(t, "dealer", d.Close)
	})
}
