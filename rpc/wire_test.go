package rpc

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/zmq-proxy/zmq-proxy/transport"
)

// The payloads are SPEC.md's examples, byte for byte.
func TestPayloads(t *testing.T) {
	req, err := encodeRequest("echo", map[string]any{"value": "hello"})
	if err != nil {
		t.Fatal(err)
	}
	if want := `[{}, {"method": "echo", "args": {"value": "hello"}}]`; string(req) != want {
		t.Fatalf("request: got %s, want %s", req, want)
	}
	ctx, r, err := decodeRequest(req)
	if err != nil || string(ctx) != "{}" || r.Method != "echo" || string(r.Args) != `{"value": "hello"}` {
		t.Fatalf("decodeRequest: got %s %+v %v", ctx, r, err)
	}
	rep, err := encodeReply(map[string]any{"v": 1}, nil)
	if err != nil || string(rep) != `[{"v": 1}, null]` {
		t.Fatalf("reply: got %s %v", rep, err)
	}
	fail, err := encodeReply(nil, remoteFailure(&RemoteError{Class: "ValueError", Module: "builtins", Message: "bad"}))
	if err != nil {
		t.Fatal(err)
	}
	if want := `[null, "{\"class\": \"ValueError\", \"module\": \"builtins\", \"message\": \"bad\", \"tb\": [], \"args\": [\"bad\"], \"kwargs\": {}}"]`; string(fail) != want {
		t.Fatalf("failure reply:\n got %s\nwant %s", fail, want)
	}
	res, re, err := decodeReply(fail)
	if err != nil || string(res) != "null" || re == nil || re.Class != "ValueError" || re.Message != "bad" {
		t.Fatalf("decodeReply: got %s %+v %v", res, re, err)
	}
	n, err := encodeNotification(Notification{MessageID: "m", PublisherID: "p", EventType: "e", Priority: "INFO",
		Payload: json.RawMessage(`{"x": 1}`), Timestamp: timestamp(time.Date(2026, 11, 30, 9, 26, 3, 767929000, time.UTC))})
	if err != nil {
		t.Fatal(err)
	}
	if want := `[{}, {"message_id": "m", "publisher_id": "p", "event_type": "e", "priority": "INFO", "payload": {"x": 1}, "timestamp": "2026-11-30 09:26:03.767929"}]`; string(n) != want {
		t.Fatalf("notification:\n got %s\nwant %s", n, want)
	}
}

// What a peer may send that is not oslo.messaging's layout is refused with
// ErrMalformed, never a panic.
func TestParseRefusesMalformed(t *testing.T) {
	fr := func(s ...string) transport.Msg {
		m := make(transport.Msg, len(s))
		for i, x := range s {
			m[i] = []byte(x)
		}
		return m
	}
	for _, m := range []transport.Msg{
		fr(), fr("", "1.0", "id", "5"), fr("x", "1.0", "id", "5", "m"), fr("", "2.0", "id", "5", "m"),
		fr("", "1.0", "id", "8", "m"), fr("", "1.0", "id", "55", "m"),
	} {
		if _, err := parseDirect(m); !errors.Is(err, ErrMalformed) {
			t.Errorf("parseDirect(%q): got %v, want ErrMalformed", m, err)
		}
	}
	for _, m := range []transport.Msg{fr("t", "1.0", "1", "m"), fr("t", "1.0", "3"), fr("t", "0.9", "3", "m")} {
		if _, err := parsePublished(m); !errors.Is(err, ErrMalformed) {
			t.Errorf("parsePublished(%q): got %v, want ErrMalformed", m, err)
		}
	}
	for _, p := range []string{``, `{}`, `[{}]`, `[{}, {"args": {}}]`, `[{}, 3]`, `[{}, {"method": "m"}, 1]`, `null`} {
		if _, _, err := decodeRequest([]byte(p)); !errors.Is(err, ErrMalformed) {
			t.Errorf("decodeRequest(%s): got %v, want ErrMalformed", p, err)
		}
	}
	for _, p := range []string{`[1]`, `[1, "not json"]`, `x`} {
		if _, _, err := decodeReply([]byte(p)); !errors.Is(err, ErrMalformed) {
			t.Errorf("decodeReply(%s): got %v, want ErrMalformed", p, err)
		}
	}
}

func FuzzDecodePayloads(f *testing.F) {
	for _, s := range []string{`[{}, {"method": "m", "args": {}}]`, `[1, null]`, `[null, "{\"class\": \"E\"}"]`, `[{}, {"payload": {}}]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _, _ = decodeRequest(b)
		_, _, _ = decodeReply(b)
		_, _ = decodeNotification(b)
		_, _ = parseDirect(bytes.Split(b, []byte{0}))
		_, _ = parsePublished(bytes.Split(b, []byte{0}))
	})
}

// seen forgets ids after their TTL, and the oldest beyond its bound,
// counting those it forgot before their TTL.
func TestSeen(t *testing.T) {
	now := time.Unix(1000, 0)
	s := newSeen(time.Minute, 3, 1<<20)
	if fresh, _ := s.first("c", "a", now); !fresh {
		t.Fatal("a: not fresh the first time")
	}
	s.done("c", "a", []byte("reply"), now)
	if fresh, e := s.first("c", "a", now.Add(time.Second)); fresh || !e.done || string(e.reply) != "reply" {
		t.Fatalf("a again: got fresh=%v %+v, want the cached reply", fresh, e)
	}
	s.first("c", "b", now)
	s.first("c", "c", now)
	s.first("c", "d", now) // a, the oldest, goes
	if got := s.len(); got != 3 {
		t.Fatalf("len: got %d, want 3", got)
	}
	if fresh, _ := s.first("c", "a", now.Add(2*time.Second)); !fresh {
		t.Fatal("a beyond the bound: still remembered")
	}
	if ev, _ := s.counts(); ev != 2 { // a, then b for a's return
		t.Fatalf("evicted: got %d, want 2", ev)
	}
	if fresh, _ := s.first("c", "zz", now.Add(2*time.Minute)); !fresh {
		t.Fatal("zz: not fresh")
	}
	if got := s.len(); got != 1 {
		t.Fatalf("after the TTL: %d ids remembered, want 1", got)
	}
	if ev, _ := s.counts(); ev != 2 { // expiry is not eviction
		t.Fatalf("evicted after expiry: got %d, want 2", ev)
	}
}

// An id is another message from another sender: a client cannot get
// another's reply by reusing its id.
func TestSeenBySender(t *testing.T) {
	now := time.Unix(1000, 0)
	for _, id := range []string{uuid.NewString(), "not-a-uuid"} {
		s := newSeen(time.Minute, 10, 1<<20)
		s.first("host/alice", id, now)
		s.done("host/alice", id, []byte("alice's"), now)
		if fresh, _ := s.first("host/mallory", id, now); !fresh {
			t.Fatalf("%s: another sender's id taken as a duplicate", id)
		}
		if fresh, e := s.first("host/alice", id, now); fresh || string(e.reply) != "alice's" {
			t.Fatalf("%s: the sender's own resend: fresh=%v %+v", id, fresh, e)
		}
	}
}

// A CALL's id is remembered for the TTL from its reply, not from its
// receipt: a handler that ran long does not shorten the time its client
// may send the call again.
func TestSeenRenewedOnReply(t *testing.T) {
	now := time.Unix(1000, 0)
	s := newSeen(time.Minute, 10, 1<<20)
	s.first("c", "slow", now)
	s.first("c", "other", now)
	s.done("c", "slow", []byte("r"), now.Add(50*time.Second)) // the handler took 50 s
	at := now.Add(90 * time.Second)                           // 90 s after receipt, 40 s after the reply
	if fresh, e := s.first("c", "slow", at); fresh || string(e.reply) != "r" {
		t.Fatalf("resent 40 s after its reply: fresh=%v %+v, want remembered with its reply", fresh, e)
	}
	if fresh, _ := s.first("c", "other", at); !fresh {
		t.Fatal("an id not renewed outlived its TTL")
	}
	if got := s.len(); got != 2 {
		t.Fatalf("len: got %d, want 2 (slow, other again)", got)
	}
}

// Cached replies are bounded in bytes: the oldest go first, their ids
// stay remembered (the handler must not run again), and a reply larger
// than the whole bound is not kept.
func TestSeenReplyBytes(t *testing.T) {
	now := time.Unix(1000, 0)
	s := newSeen(time.Minute, 100, 10)
	for _, id := range []string{"a", "b", "c"} {
		s.first("c", id, now)
		s.done("c", id, []byte("1234"), now)
	}
	if s.replyBytes > 10 {
		t.Fatalf("reply bytes %d over the bound 10", s.replyBytes)
	}
	fresh, e := s.first("c", "a", now)
	if fresh || !e.done || e.reply != nil {
		t.Fatalf("a, whose reply was dropped: fresh=%v %+v, want done without a reply", fresh, e)
	}
	if _, e := s.first("c", "c", now); string(e.reply) != "1234" {
		t.Fatalf("c, the newest: %+v, want its reply", e)
	}
	s.first("c", "big", now)
	s.done("c", "big", make([]byte, 11), now)
	if _, e := s.first("c", "big", now); !e.done || e.reply != nil {
		t.Fatalf("a reply over the bound: %+v, want done, not kept", e)
	}
	if _, dropped := s.counts(); dropped != 2 {
		t.Fatalf("dropped: got %d, want 2 (a, big)", dropped)
	}
}

// Arguments given as json.RawMessage are sent as they are, once checked.
func TestRawArgs(t *testing.T) {
	got, err := encodeRequest("m", json.RawMessage(` {"a":1} `))
	if err != nil || string(got) != `[{}, {"method": "m", "args": {"a":1}}]` {
		t.Fatalf("raw args: got %s, %v", got, err)
	}
	for _, bad := range []string{``, `[1]`, `{"a":`, `"s"`} {
		if _, err := encodeRequest("m", json.RawMessage(bad)); !errors.Is(err, ErrBadTarget) {
			t.Errorf("raw args %q: got %v, want ErrBadTarget", bad, err)
		}
	}
}

// UUID ids and other ids are remembered alike, in one arrival order; an
// id in upper case is another id, as its string is.
func TestSeenUUIDAndOtherIDs(t *testing.T) {
	now := time.Unix(1000, 0)
	s := newSeen(time.Minute, 4, 1<<20)
	u := "0b8f7c3e-5d2a-4c1b-9e7f-3a6d2c1b0e9f"
	ids := []string{u, "x", "not-a-uuid", strings.ToUpper(u)}
	for _, id := range ids {
		if fresh, _ := s.first("c", id, now); !fresh {
			t.Fatalf("%q: not fresh the first time", id)
		}
	}
	for _, id := range ids {
		if fresh, _ := s.first("c", id, now.Add(time.Second)); fresh {
			t.Fatalf("%q again: fresh, want remembered", id)
		}
	}
	// A fifth id: u, the oldest, goes; the others stay.
	s.first("c", "another", now.Add(2*time.Second))
	if got := s.len(); got != 4 {
		t.Fatalf("len: got %d, want 4", got)
	}
	if fresh, _ := s.first("c", u, now.Add(3*time.Second)); !fresh {
		t.Fatal("u beyond the bound: still remembered")
	}
	if fresh, _ := s.first("c", "late", now.Add(2*time.Minute)); !fresh || s.len() != 1 {
		t.Fatalf("after the TTL: %d ids remembered, want 1 (late)", s.len())
	}
}

// parseUUID takes exactly the ids uuid.UUID.String writes, to the same 16
// bytes.
func TestParseID(t *testing.T) {
	for range 1000 {
		u := uuid.New()
		if k, ok := parseUUID(u.String()); !ok || k != [16]byte(u) {
			t.Fatalf("parseUUID(%s): got %x, %v", u, k, ok)
		}
	}
	u := uuid.New().String()
	for _, bad := range []string{"", u[:35], u + "0", strings.ToUpper(u), strings.Replace(u, "-", "0", 1),
		"{" + u[1:], u[:8] + "x" + u[9:], u[:35] + "g", strings.Repeat("-", 36)} {
		if bad == u {
			continue
		}
		if k, ok := parseUUID(bad); ok {
			t.Errorf("parseUUID(%q): got %x, want not a UUID", bad, k)
		}
	}
}

// A message id carries exactly the flags it was made with, as the proxy
// and servers read them; oslo.messaging's ids (version 4 UUIDs) and ids
// that are not UUIDs carry none.
func TestIDFlags(t *testing.T) {
	for flags := range byte(4) {
		id := newID(flags)
		if _, ok := parseUUID(id); !ok {
			t.Fatalf("newID(%d) = %q: not a UUID", flags, id)
		}
		if got := transport.IDFlags(id); got != flags {
			t.Errorf("IDFlags(newID(%d) = %s) = %d", flags, id, got)
		}
		if got := transport.IDFlags([]byte(id)); got != flags {
			t.Errorf("IDFlags([]byte(%s)) = %d, want %d", id, got, flags)
		}
	}
	for _, id := range []string{uuid.NewString(), "5a3f6c1e-aaaa-4bbb-8ccc-dddddddddddd", "", "not-a-uuid",
		newID(3)[:35], newID(3) + "0"} {
		if got := transport.IDFlags(id); got != 0 {
			t.Errorf("IDFlags(%q) = %d, want 0", id, got)
		}
	}
}

// A server takes a known method's name from its handlers without
// decoding it, but only for names whose JSON bytes are their value: a
// handler named with a backslash does not catch the escape of another
// name.
func TestMethodNamesEscapes(t *testing.T) {
	names := methodNames(map[string]Handler{"A": nil, `\u0041`: nil, "é": nil})
	for raw, want := range map[string]string{`"A"`: "A", `"\u0041"`: "A", `"\\u0041"`: `\u0041`, `"é"`: "é", `"\u00e9"`: "é"} {
		_, req, err := decodeRequestIn([]byte(`[{}, {"method": `+raw+`}]`), names)
		if err != nil || req.Method != want {
			t.Errorf("method %s: got %q, %v; want %q", raw, req.Method, err, want)
		}
	}
}

// A ring of several chunks (and a part of one) remembers each id and its
// reply in its own slot, round after round: the last max ids are
// duplicates with their replies, the ones before are forgotten, counted.
func TestSeenChunks(t *testing.T) {
	const max = 2*seenChunk + 100
	now := time.Unix(1000, 0)
	s := newSeen(time.Hour, max, 1<<30)
	ids := make([]string, 3*max+7) // three rounds and a bit
	for i := range ids {
		ids[i] = newID(0)
		if fresh, _ := s.first("c", ids[i], now); !fresh {
			t.Fatalf("id %d not fresh the first time", i)
		}
		s.done("c", ids[i], []byte(ids[i][24:]), now)
	}
	// done renews: each id took two slots, so the last max/2 are remembered.
	kept := max / 2
	for i, id := range ids[len(ids)-kept:] {
		fresh, e := s.first("c", id, now)
		if fresh || !e.done || string(e.reply) != id[24:] {
			t.Fatalf("id %d of the last %d: fresh=%v reply %q, want its reply %q", i, kept, fresh, e.reply, id[24:])
		}
	}
	if fresh, _ := s.first("c", ids[len(ids)-kept-2], now); !fresh {
		t.Fatal("an id older than the last max slots is still remembered")
	}
	if got := s.len(); got != kept+1 {
		t.Fatalf("%d ids remembered, want %d", got, kept+1)
	}
}
