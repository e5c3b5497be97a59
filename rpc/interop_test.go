package rpc

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
	"github.com/zmq-proxy/zmq-proxy/registry"
)

const python = "/usr/bin/python3"

func needPython(t *testing.T) {
	t.Helper()
	if out, err := exec.Command(python, "-c", "import zmq").CombinedOutput(); err != nil {
		t.Fatalf("python3-zmq is missing (run .ci/test.sh, which installs it): %v\n%s", err, out)
	}
}

// pyPeer runs testdata/oslo_peer.py; lines are its JSON output lines.
type pyPeer struct {
	cmd   *exec.Cmd
	lines chan map[string]any
}

func startPy(t *testing.T, args ...string) *pyPeer {
	t.Helper()
	cmd := exec.Command(python, append([]string{"testdata/oslo_peer.py"}, args...)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &pyPeer{cmd: cmd, lines: make(chan map[string]any, 4)}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var v map[string]any
			if json.Unmarshal(sc.Bytes(), &v) == nil {
				p.lines <- v
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return p
}

func (p *pyPeer) next(t *testing.T) map[string]any {
	t.Helper()
	select {
	case v, ok := <-p.lines:
		if !ok {
			t.Fatal("the python peer exited without a result")
		}
		return v
	case <-time.After(wait):
		t.Fatal("no line from the python peer")
	}
	return nil
}

func received(t *testing.T, v map[string]any) [][]string {
	t.Helper()
	raw, _ := json.Marshal(v["received"])
	var out [][]string
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("received: %v in %v", err, v)
	}
	return out
}

// A Go client calls and casts to a libzmq server that speaks oslo's frames:
// the server gets SPEC.md's frames byte for byte, and its replies and
// failures come back as results and *RemoteError.
func TestGoClientLibzmqServer(t *testing.T) {
	needPython(t)
	sys := newSystem(t, 1)
	identity := "node1/demo/py/2f0e4c1a-1111-4222-8333-944455556666"
	py := startPy(t, "server", identity, sys.proxies[0].Addrs().Backend, "3")
	py.next(t) // ready
	// oslo's services register in their own matchmaker; here the test
	// registers the libzmq server's identity as a Go server would.
	reg, err := registry.NewTargetRegistrar(registry.Config{Client: sys.cli, Logger: testutil.Quiet()},
		registry.Target{Target: "demo", Identity: identity}, registry.Target{Target: "demo/py", Identity: identity})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	c := sys.client(ClientConfig{Acks: true})
	waitTargets(t, c, "demo/py", 1)
	waitLinks(t, c.links, 1)
	// The libzmq DEALER may connect after the client's first try; with acks
	// the call is sent again until it is acknowledged.
	got, err := c.Call(ctxFor(t, wait), Target{Topic: "demo", Server: "py"}, "echo", map[string]any{"value": "hello"})
	if err != nil {
		t.Fatalf("Call: %v", err)
	}
	if want := `{"server":"libzmq","value":"hello"}`; compact(t, got) != want {
		t.Fatalf("reply: got %s, want %s", got, want)
	}
	_, err = c.Call(ctxFor(t, wait), Target{Topic: "demo"}, "fail", nil)
	var re *RemoteError
	if !errors.As(err, &re) || re.Class != "ValueError" || re.Message != "libzmq says no" || !reflect.DeepEqual(re.Traceback, []string{"Traceback"}) {
		t.Fatalf("fail: got %#v, want the libzmq server's ValueError", err)
	}
	if err := c.Cast(ctxFor(t, wait), Target{Topic: "demo"}, "echo", map[string]any{"n": 1}); err != nil {
		t.Fatalf("Cast: %v", err)
	}
	msgs := received(t, py.next(t))
	if len(msgs) < 3 {
		t.Fatalf("libzmq server got %d messages, want at least 3: %q", len(msgs), msgs)
	}
	first := msgs[0]
	want := []string{"", "1.0", c.Identity(), "1", first[4], `[{}, {"method": "echo", "args": {"value": "hello"}}]`}
	if !reflect.DeepEqual(first, want) {
		t.Fatalf("first message at the libzmq server:\n got %q\nwant %q", first, want)
	}
	last := msgs[len(msgs)-1]
	if want := []string{"", "1.0", c.Identity(), "2", last[4], `[{}, {"method": "echo", "args": {"n": 1}}]`}; !reflect.DeepEqual(last, want) {
		t.Fatalf("cast at the libzmq server:\n got %q\nwant %q", last, want)
	}
}

// A default Go client (no acks) calls and casts to a libzmq server with
// oslo.messaging's defaults (no rpc_use_acks: it never ACKs): the call
// gets its reply, the cast goes out once, nothing waits for an ACK.
func TestGoClientLibzmqServerNoAcks(t *testing.T) {
	needPython(t)
	sys := newSystem(t, 1)
	identity := "node1/demo/py/2f0e4c1a-1111-4222-8333-944455556667"
	py := startPy(t, "server", identity, sys.proxies[0].Addrs().Backend, "2", "0")
	py.next(t) // ready
	reg, err := registry.NewTargetRegistrar(registry.Config{Client: sys.cli, Logger: testutil.Quiet()},
		registry.Target{Target: "demo", Identity: identity})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	c := sys.client(ClientConfig{})
	waitTargets(t, c, "demo", 1)
	waitLinks(t, c.links, 1)
	var got json.RawMessage
	testutil.CheckFor(t, wait, func() error { // the libzmq DEALER may connect after the first try
		var err error
		got, err = c.Call(ctxFor(t, 2*time.Second), Target{Topic: "demo"}, "echo", map[string]any{"value": "hi"})
		return err
	})
	if want := `{"server":"libzmq","value":"hi"}`; compact(t, got) != want {
		t.Fatalf("reply: got %s, want %s", got, want)
	}
	if err := c.Cast(ctxFor(t, wait), Target{Topic: "demo"}, "echo", map[string]any{"n": 1}); err != nil {
		t.Fatalf("Cast: %v", err)
	}
	msgs := received(t, py.next(t))
	if len(msgs) != 2 || msgs[1][3] != "2" {
		t.Fatalf("libzmq server got %q, want the call and the cast", msgs)
	}
	if c.Stats().Retries.Load() != 0 || c.Stats().Late.Load() != 0 {
		t.Fatalf("retries %d, late %d: want none", c.Stats().Retries.Load(), c.Stats().Late.Load())
	}
}

// libzmqCallsTwice starts an echo server on topic demo (ServerConfig.Acks
// as given) and has a libzmq client, as clientID, send it method(args)
// twice with message id msgID; it returns the server, its handler counts
// and what the client received.
func libzmqCallsTwice(t *testing.T, acks bool, clientID, msgID, method, args string) (*Server, *counter, [][]string) {
	t.Helper()
	needPython(t)
	sys := newSystem(t, 1)
	cnt := newCounter()
	srv := sys.echoServer("demo", "s1", cnt, func(cfg *ServerConfig) { cfg.Acks = acks })
	waitLinks(t, srv.links, 1)
	py := startPy(t, "client", clientID, sys.proxies[0].Addrs().Frontend, srv.Identity(), msgID, method, args, "2")
	v := py.next(t)
	if v["timeout"] == true {
		t.Fatalf("libzmq client timed out: %v", v)
	}
	return srv, cnt, received(t, v)
}

// A libzmq client that speaks oslo's frames calls a Go server, twice with
// one message id: two byte-identical replies, one handler run. A default
// server (as oslo.messaging's, without rpc_use_acks) sends no ACK, which
// an oslo.messaging client without acks would fail on; one with Acks (an
// oslo deployment with rpc_use_acks) ACKs both.
func TestLibzmqClientGoServer(t *testing.T) {
	for _, acks := range []bool{false, true} {
		t.Run(fmt.Sprintf("acks=%v", acks), func(t *testing.T) {
			msgID := "5a3f6c1e-aaaa-4bbb-8ccc-dddddddddddd"
			srv, cnt, got := libzmqCallsTwice(t, acks, "node1/0b7e3a52-5555-4666-8777-988899990000", msgID, "echo", `{"value": "hi"}`)
			ack := []string{"", "1.0", srv.Identity(), "6", msgID}
			reply := []string{"", "1.0", srv.Identity(), "5", msgID, `[{"server": "s1", "value": "hi"}, null]`}
			want := [][]string{reply, reply}
			if acks {
				want = [][]string{ack, reply, ack, reply}
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("libzmq client received:\n got %q\nwant %q", got, want)
			}
			if ids, runs := cnt.total(); ids != 1 || runs != 1 {
				t.Fatalf("handler: %d ids in %d runs, want 1 in 1", ids, runs)
			}
			if d := srv.Stats().Duplicates.Load(); d != 1 {
				t.Fatalf("duplicates: got %d, want 1", d)
			}
		})
	}
}

// A CALL the server cannot decode (here, no method) is answered with a
// ValueError; the same message id again gets the same reply, byte for
// byte (it used to come back without its payload), with tb, args and
// kwargs as oslo.messaging reads them (they used to be null, which its
// deserialize_remote_exception cannot join).
func TestMalformedCallAnsweredAgain(t *testing.T) {
	_, cnt, got := libzmqCallsTwice(t, true, "node1/malformed", "5a3f6c1e-aaaa-4bbb-8ccc-eeeeeeeeeeee", "", `{}`)
	if len(got) != 4 || len(got[1]) != 6 || !reflect.DeepEqual(got[1], got[3]) || !strings.Contains(got[1][5], "ValueError") ||
		!strings.Contains(got[1][5], `\"tb\": [], \"args\": [`) {
		t.Fatalf("libzmq client received %q; want ACK, a ValueError reply, ACK, the same reply", got)
	}
	if ids, runs := cnt.total(); ids != 0 || runs != 0 {
		t.Fatalf("handler: %d ids in %d runs, want none", ids, runs)
	}
}
