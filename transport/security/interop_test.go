package security

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
)

const python = "/usr/bin/python3"

// pyPeer is testdata/secpeer.py running as a libzmq peer.
type pyPeer struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	mu     sync.Mutex
	lines  []string
	stderr testutil.SyncBuffer
	done   chan struct{}
	err    error
}

func startPy(t *testing.T, args ...string) *pyPeer {
	t.Helper()
	if out, err := exec.Command(python, "-c", "import zmq").CombinedOutput(); err != nil {
		t.Fatalf("python3-zmq (libzmq's Python binding) is missing: apt-get install python3-zmq\n%v: %s", err, out)
	}
	cmd := exec.Command(python, append([]string{"-B", "-u", filepath.Join("testdata", "secpeer.py")}, args...)...)
	p := &pyPeer{cmd: cmd, done: make(chan struct{})}
	var err error
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = &p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 64<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.mu.Unlock()
		}
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stdin.Close()
		select {
		case <-p.done:
		case <-time.After(wait):
			cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *pyPeer) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return fmt.Sprintf("stdout:\n%s\nstderr:\n%s", strings.Join(p.lines, "\n"), p.stderr.String())
}

// line waits for a line starting with prefix and returns the rest. It
// fails at once if the peer exits without printing it.
func (p *pyPeer) line(t *testing.T, prefix string) string {
	t.Helper()
	var rest string
	exited := false
	testutil.CheckFor(t, wait, func() error {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, l := range p.lines {
			if r, ok := strings.CutPrefix(l, prefix); ok {
				rest = r
				return nil
			}
		}
		select {
		case <-p.done:
			exited = true
			return nil
		default:
		}
		return fmt.Errorf("no %q line yet\n%s", prefix, strings.Join(p.lines, "\n"))
	})
	if exited {
		t.Fatalf("peer exited (%v) without printing %q\n%s", p.err, prefix, p.output())
	}
	return rest
}

// finish closes the peer's stdin and waits for it to exit with status 0.
func (p *pyPeer) finish(t *testing.T) {
	t.Helper()
	p.stdin.Close()
	select {
	case <-p.done:
	case <-time.After(wait):
		t.Fatalf("peer did not exit\n%s", p.output())
	}
	if p.err != nil {
		t.Fatalf("peer failed: %v\n%s", p.err, p.output())
	}
}

// echoServer accepts connections, runs the handshake of mech on each, and
// echoes every message back on its connection, counting what goes wrong.
type echoServer struct {
	ln   net.Listener
	mech Mechanism
	wg   sync.WaitGroup

	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	ok       int // handshakes completed
	refused  int // ErrRefused
	failed   int // other handshake errors
	decrypt  int // ErrDecrypt in the data phase
	received [][][]byte
	users    []string
}

func startEchoServer(t *testing.T, mech Mechanism) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &echoServer{ln: ln, mech: mech, conns: make(map[net.Conn]struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[conn] = struct{}{}
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer conn.Close()
				s.serve(conn)
			}()
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *echoServer) endpoint() string { return "tcp://" + s.ln.Addr().String() }

func (s *echoServer) close() {
	s.ln.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *echoServer) serve(conn net.Conn) {
	conn.SetDeadline(time.Now().Add(wait))
	sess, err := Handshake(conn, s.mech, "ROUTER", nil, 1<<20)
	s.mu.Lock()
	switch {
	case err == nil:
		s.ok++
		s.users = append(s.users, sess.User)
	case errors.Is(err, ErrRefused):
		s.refused++
	default:
		s.failed++
	}
	s.mu.Unlock()
	if err != nil {
		return
	}
	conn.SetDeadline(time.Time{})
	fr := &frameReader{r: sess.Conn}
	for {
		msg, cmd, err := fr.readMsg()
		if err != nil {
			if errors.Is(err, ErrDecrypt) {
				s.mu.Lock()
				s.decrypt++
				s.mu.Unlock()
			}
			return
		}
		if cmd {
			continue
		}
		s.mu.Lock()
		s.received = append(s.received, msg)
		s.mu.Unlock()
		if err := writeMsg(sess.Conn, msg...); err != nil {
			return
		}
	}
}

type counts struct{ ok, refused, failed, decrypt, received int }

func (s *echoServer) counts() counts {
	s.mu.Lock()
	defer s.mu.Unlock()
	return counts{s.ok, s.refused, s.failed, s.decrypt, len(s.received)}
}

// checkSent compares what a client peer says it sent with what the server
// received.
func checkSent(t *testing.T, res string, got [][][]byte) {
	t.Helper()
	var r struct{ Sent [][]string }
	if err := json.Unmarshal([]byte(res), &r); err != nil {
		t.Fatalf("RESULT %q: %v", res, err)
	}
	if len(got) != len(r.Sent) {
		t.Fatalf("server received %d messages, client sent %d", len(got), len(r.Sent))
	}
	for i, m := range r.Sent {
		if len(got[i]) != len(m) {
			t.Fatalf("message %d: got %d frames, want %d", i, len(got[i]), len(m))
		}
		for j, f := range m {
			if hex.EncodeToString(got[i][j]) != f {
				t.Fatalf("message %d frame %d differs", i, j)
			}
		}
	}
}

// z85 is a key for a peer's command line. Pass it as --flag=KEY: a Z85 key
// may start with '-', which argparse would take for an option.
func z85(k Key) string { return k.String() }

// A libzmq CURVE DEALER talks to our CURVE server: every message arrives
// byte for byte and its echo goes back, and the server knows the client
// by its key.
func TestInteropLibzmqClientGoCurveServer(t *testing.T) {
	srvKP, cliKP := mustKeyPair(t), mustKeyPair(t)
	s := startEchoServer(t, CurveServer(srvKP, AllowKeys(cliKP.Public)))
	py := startPy(t, "client", "--endpoint", s.endpoint(), "--server-key="+z85(srvKP.Public),
		"--public="+z85(cliKP.Public), "--secret="+z85(cliKP.Secret), "--count", "12")
	res := py.line(t, "RESULT ")
	py.finish(t)
	s.mu.Lock()
	got := s.received
	users := s.users
	s.mu.Unlock()
	checkSent(t, res, got)
	if len(users) != 1 || users[0] != cliKP.Public.String() {
		t.Errorf("server saw users %q, want [%s]", users, cliKP.Public)
	}
}

// Our CURVE client talks to a libzmq CURVE ROUTER: a whole burst of
// messages sealed into one write comes back byte for byte.
func TestInteropGoCurveClientLibzmqServer(t *testing.T) {
	srvKP, cliKP := mustKeyPair(t), mustKeyPair(t)
	py := startPy(t, "server", "--secret="+z85(srvKP.Secret))
	ep := py.line(t, "ENDPOINT ")
	sess := dialHandshake(t, ep, CurveClient(srvKP.Public, cliKP), "DEALER", "go-client")
	if got := sess.Peer[PropSocketType]; got != "ROUTER" {
		t.Errorf("peer socket type %q, want ROUTER", got)
	}
	msgs := pyMessages(12)
	var burst bytes.Buffer
	for _, m := range msgs {
		writeMsg(&burst, m...)
	}
	if _, err := sess.Conn.Write(burst.Bytes()); err != nil {
		t.Fatal(err)
	}
	fr := &frameReader{r: sess.Conn}
	sess.Conn.SetReadDeadline(time.Now().Add(wait))
	for i, want := range msgs {
		got, _, err := fr.readMsg()
		if err != nil {
			t.Fatalf("echo %d: %v\n%s", i, err, py.output())
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("echo %d differs: got %.60q, want %.60q", i, got, want)
		}
	}
	py.finish(t)
	if got := py.line(t, "RESULT "); got != `{"echoed": 12}` {
		t.Errorf("libzmq server says %s, want 12 echoed", got)
	}
}

// pyMessages are secpeer.py's messages.
func pyMessages(count int) [][][]byte {
	var out [][][]byte
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	for i := range count {
		m := [][]byte{[]byte(fmt.Sprintf("m%d", i)), {}, bytes.Repeat(all, i%3)}
		if i%5 == 4 {
			m = append(m, bytes.Repeat([]byte{0xff}, 70000))
		}
		out = append(out, m)
	}
	return out
}

func dialHandshake(t *testing.T, endpoint string, mech Mechanism, typ, id string) *Session {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(endpoint, "tcp://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(wait))
	sess, err := Handshake(conn, mech, typ, []byte(id), 1<<20)
	if err != nil {
		t.Fatalf("handshake with %s: %v", endpoint, err)
	}
	conn.SetDeadline(time.Time{})
	return sess
}

// The three ways a libzmq client is turned away: a key not in the
// allow-list, the wrong server key, and a flipped byte in an encrypted
// frame. Each is counted, and nothing it sent is taken.
func TestInteropRefusals(t *testing.T) {
	srvKP, allowed, stranger := mustKeyPair(t), mustKeyPair(t), mustKeyPair(t)
	wrongServer := mustKeyPair(t)
	tests := []struct {
		name     string
		client   KeyPair
		srvKey   Key
		flip     bool
		wantWhat string
		check    func(c counts) bool
	}{
		{"client key not allowed", stranger, srvKP.Public, false, "refused >= 1",
			func(c counts) bool { return c.refused >= 1 }},
		{"wrong server key", allowed, wrongServer.Public, false, "refused >= 1",
			func(c counts) bool { return c.refused >= 1 }},
		{"flipped byte in a MESSAGE", allowed, srvKP.Public, true, "decrypt failures >= 1",
			func(c counts) bool { return c.decrypt >= 1 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := startEchoServer(t, CurveServer(srvKP, AllowKeys(allowed.Public)))
			ep := s.endpoint()
			if tc.flip {
				ep = "tcp://" + testutil.Relay(t, s.ln.Addr().String(), testutil.FlipFrame(2))
			}
			py := startPy(t, "client", "--attempt", "--endpoint", ep, "--server-key="+z85(tc.srvKey),
				"--public="+z85(tc.client.Public), "--secret="+z85(tc.client.Secret))
			exited := false
			testutil.CheckFor(t, wait, func() error {
				if c := s.counts(); !tc.check(c) {
					select {
					case <-py.done:
						exited = true
						return nil
					default:
					}
					return fmt.Errorf("server counts %+v, want %s\n%s", c, tc.wantWhat, py.output())
				}
				return nil
			})
			if exited {
				t.Fatalf("peer exited (%v) before the server counted it: %+v\n%s", py.err, s.counts(), py.output())
			}
			py.finish(t)
			if c := s.counts(); c.received != 0 {
				t.Errorf("server received %d messages from a refused client, want 0", c.received)
			}
		})
	}
}
