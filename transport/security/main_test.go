package security

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// wait bounds every wait in these tests; a passing test never reaches it.
const wait = 60 * time.Second

// pair runs server and client handshakes over a real loopback TCP
// connection and returns both results.
type result struct {
	s   *Session
	err error
}

func handshakePair(t *testing.T, server, client Mechanism, serverType, clientType string) (srv, cli result) {
	t.Helper()
	srvConn, cliConn := tcpPair(t)
	done := make(chan result, 1)
	go func() { done <- handshakeOn(srvConn, server, serverType, "srv") }()
	cli = handshakeOn(cliConn, client, clientType, "cli")
	srv = <-done
	for _, r := range []result{srv, cli} {
		if r.s != nil {
			t.Cleanup(func() { r.s.Conn.Close() })
		}
	}
	return srv, cli
}

// handshakeOn runs one side's handshake on conn within wait; conn is
// closed if it fails.
func handshakeOn(conn net.Conn, m Mechanism, socketType, identity string) result {
	conn.SetDeadline(time.Now().Add(wait))
	s, err := Handshake(conn, m, socketType, []byte(identity), 1<<20)
	if err != nil {
		conn.Close()
	} else {
		conn.SetDeadline(time.Time{})
	}
	return result{s, err}
}

// tcpPair returns the two ends of a loopback TCP connection, closed when
// the test ends.
func tcpPair(t testing.TB) (srv, cli net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cli, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	srv, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv, cli
}

// writeMsg writes one message of frames on conn.
func writeMsg(conn io.Writer, frames ...[]byte) error {
	var b []byte
	for i, f := range frames {
		flags := byte(0)
		if i < len(frames)-1 {
			flags = flagMore
		}
		if len(f) > 255 {
			b = append(b, flags|flagLong)
			b = binary.BigEndian.AppendUint64(b, uint64(len(f)))
		} else {
			b = append(b, flags, byte(len(f)))
		}
		b = append(b, f...)
	}
	_, err := conn.Write(b)
	return err
}

// frameReader reads plain ZMTP frames from a data-phase connection.
type frameReader struct {
	r   io.Reader
	buf []byte
}

// readMsg reads one message; a command frame is returned alone with
// command set.
func (fr *frameReader) readMsg() (msg [][]byte, command bool, err error) {
	for {
		var hdr [9]byte
		if _, err := io.ReadFull(fr.r, hdr[:2]); err != nil {
			return nil, false, err
		}
		size := uint64(hdr[1])
		if hdr[0]&flagLong != 0 {
			if _, err := io.ReadFull(fr.r, hdr[2:9]); err != nil {
				return nil, false, err
			}
			size = binary.BigEndian.Uint64(hdr[1:9])
		}
		if size > 64<<20 {
			return nil, false, fmt.Errorf("frame of %d bytes", size)
		}
		body := make([]byte, size)
		if _, err := io.ReadFull(fr.r, body); err != nil {
			return nil, false, err
		}
		if hdr[0]&flagCommand != 0 {
			return [][]byte{body}, true, nil
		}
		msg = append(msg, body)
		if hdr[0]&flagMore == 0 {
			return msg, false, nil
		}
	}
}

func mustKeyPair(t testing.TB) KeyPair {
	t.Helper()
	kp, err := GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func wantErr(t *testing.T, who string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", who, err, want)
	}
}

func dialConn(t *testing.T, endpoint string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", endpoint[len("tcp://"):])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(wait))
	return conn
}
