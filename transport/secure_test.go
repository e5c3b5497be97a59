package transport

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
	"github.com/zmq-proxy/zmq-proxy/transport/security"
)

func keyPair(t *testing.T) security.KeyPair {
	t.Helper()
	kp, err := security.GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// ROUTER and DEALER over CURVE: messages go both ways, in bursts.
func TestCurveRouterDealer(t *testing.T) {
	srv, cli := keyPair(t), keyPair(t)
	var atRouter, atDealer collector
	r := startRouter(t, Options{Security: security.CurveServer(srv, security.AllowKeys(cli.Public)), OnBatch: atRouter.onBatch})
	d := startDealer(t, Options{Identity: []byte("d1"), Security: security.CurveClient(srv.Public, cli), OnBatch: atDealer.onBatch}, r.Addr())
	testutil.CheckFor(t, wait, func() error {
		if d.Connected() != 1 {
			return fmt.Errorf("dealer connected to %d peers, want 1", d.Connected())
		}
		return nil
	})
	const n = 200
	for i := range n {
		d.Send(frames("", fmt.Sprint(i)), nil)
	}
	testutil.CheckFor(t, wait, func() error {
		if got := atRouter.count(); got != n {
			return fmt.Errorf("router got %d messages, want %d", got, n)
		}
		return nil
	})
	for i, m := range atRouter.all() {
		if m.peer != "d1" || len(m.msg) != 2 || m.msg[1] != fmt.Sprint(i) {
			t.Fatalf("message %d: from %q %q, want from d1 [\"\" %d]", i, m.peer, m.msg, i)
		}
	}
	// An encrypted connection is never written around its encryption.
	for _, s := range []*socket{r.s, d.s} {
		s.mu.Lock()
		for p := range s.peers {
			if p.raw != nil {
				t.Errorf("a CURVE peer may be written directly (raw set): its bytes would leave unencrypted")
			}
		}
		s.mu.Unlock()
	}
	r.Send([]byte("d1"), frames("", "reply"), nil)
	testutil.CheckFor(t, wait, func() error {
		if !atDealer.has("", "reply") {
			return fmt.Errorf("dealer got %v, want the reply", atDealer.all())
		}
		return nil
	})
}

// PUB and SUB over CURVE: subscriptions travel encrypted, and so do the
// published messages.
func TestCurvePubSub(t *testing.T) {
	srv, cli := keyPair(t), keyPair(t)
	var got collector
	p := startPub(t, Options{Security: security.CurveServer(srv, security.AllowKeys(cli.Public))})
	startSub(t, Options{Security: security.CurveClient(srv.Public, cli), OnBatch: got.onBatch}, []string{"a"}, p.Addr())
	testutil.CheckFor(t, wait, func() error {
		p.Publish(frames("b", "no"), nil)
		p.Publish(frames("a", "yes"), nil)
		if got.count() == 0 {
			return fmt.Errorf("subscriber got nothing yet")
		}
		return nil
	})
	for _, m := range got.all() {
		if m.msg[0] != "a" {
			t.Fatalf("subscriber got %q, not subscribed to it", m.msg)
		}
	}
}

// A refused client is counted on the server as a failed handshake and a
// refused credential, and never attached.
func TestCurveRefusedCounted(t *testing.T) {
	srv, cli, stranger := keyPair(t), keyPair(t), keyPair(t)
	r := startRouter(t, Options{Security: security.CurveServer(srv, security.AllowKeys(cli.Public))})
	d := startDealer(t, Options{Security: security.CurveClient(srv.Public, stranger)}, r.Addr())
	testutil.CheckFor(t, wait, func() error {
		st := r.Stats()
		if st.AuthRefused.Load() < 2 || st.BadHandshake.Load() < 2 {
			return fmt.Errorf("refused %d, failed handshakes %d; want both >= 2 (the dealer retries)",
				st.AuthRefused.Load(), st.BadHandshake.Load())
		}
		return nil
	})
	if r.Stats().Peers.Load() != 0 || d.Connected() != 0 {
		t.Fatalf("a refused dealer is attached: router peers %d, dealer connected %d", r.Stats().Peers.Load(), d.Connected())
	}
}

func TestPlainRouterDealer(t *testing.T) {
	h, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	users, err := security.PlainUserList(map[string]string{"u": string(h)})
	if err != nil {
		t.Fatal(err)
	}
	var atRouter collector
	r := startRouter(t, Options{Security: security.PlainServer(users), OnBatch: atRouter.onBatch})
	good, _ := security.PlainClient("u", "pw")
	bad, _ := security.PlainClient("u", "wrong")
	d := startDealer(t, Options{Identity: []byte("good"), Security: good}, r.Addr())
	startDealer(t, Options{Identity: []byte("bad"), Security: bad}, r.Addr())
	testutil.CheckFor(t, wait, func() error {
		d.Send(frames("", "hi"), nil)
		if atRouter.count() == 0 || r.Stats().AuthRefused.Load() == 0 {
			return fmt.Errorf("router got %d messages, refused %d; want both > 0", atRouter.count(), r.Stats().AuthRefused.Load())
		}
		return nil
	})
	for _, m := range atRouter.all() {
		if m.peer != "good" {
			t.Fatalf("message from %q, want only from good", m.peer)
		}
	}
}

// countHandler counts the log records with a given message.
type countHandler struct {
	msg string
	n   atomic.Int64
}

func (h *countHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.n.Add(1)
	}
	return nil
}
func (h *countHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countHandler) WithGroup(string) slog.Handler      { return h }

// A client that keeps retrying with a refused key is counted every time
// but logged once per interval, so it cannot flood the log.
func TestRefusalsLoggedRateLimited(t *testing.T) {
	srv, stranger := keyPair(t), keyPair(t)
	h := &countHandler{msg: "credentials refused"}
	start := time.Now()
	r := startRouter(t, Options{Security: security.CurveServer(srv, security.AllowKeys()), Logger: slog.New(h)})
	startDealer(t, Options{Security: security.CurveClient(srv.Public, stranger)}, r.Addr())
	testutil.CheckFor(t, wait, func() error {
		if n := r.Stats().AuthRefused.Load(); n < 5 {
			return fmt.Errorf("refused %d times, want >= 5", n)
		}
		return nil
	})
	// One line, and one more per interval if the machine was that slow.
	want := 1 + int64(time.Since(start)/logWarnEvery)
	if n := h.n.Load(); n < 1 || n > want {
		t.Fatalf("%d log lines for %d refusals, want 1..%d", n, r.Stats().AuthRefused.Load(), want)
	}
}

// Peers that send CURVE messages over the size limit are each closed and
// counted, but logged once per interval.
func TestCurveTooLargeLoggedRateLimited(t *testing.T) {
	srv, cli := keyPair(t), keyPair(t)
	h := &countHandler{msg: "peer closed: message too large"}
	start := time.Now()
	r := startRouter(t, Options{MaxMessageSize: 1024, Security: security.CurveServer(srv, security.AllowKeys(cli.Public)), Logger: slog.New(h)})
	const peers = 5
	for i := range peers {
		d := startDealer(t, Options{Identity: fmt.Appendf(nil, "d%d", i), Security: security.CurveClient(srv.Public, cli)}, r.Addr())
		testutil.CheckTrue(t, wait, "dealer not connected yet", func() bool { return d.Send(frames("", strings.Repeat("x", 4096)), nil) })
	}
	testutil.CheckFor(t, wait, func() error {
		if n := r.Stats().DroppedOversize.Load(); n < peers {
			return fmt.Errorf("%d connections closed for size, want %d", n, peers)
		}
		return nil
	})
	want := 1 + int64(time.Since(start)/logWarnEvery)
	if n := h.n.Load(); n < 1 || n > want {
		t.Fatalf("%d log lines for %d oversize messages, want 1..%d", n, r.Stats().DroppedOversize.Load(), want)
	}
}
