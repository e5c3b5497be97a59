package rpc

import (
	"testing"

	"github.com/google/uuid"

	"github.com/zmq-proxy/zmq-proxy/transport"
)

// testIDs makes the tests' message ids, as a client makes its own.
var testIDs = newIDs()

func newID(flags byte) string { return testIDs.next(flags) }

// A client's ids are UUIDs as uuid parses and writes them (version 4
// without flags, 8 with, RFC 9562's variant), all different, also across
// the counter's carry into its next byte; two clients' ids differ.
func TestIDsAreUUIDs(t *testing.T) {
	g := newIDs()
	g.base[15] = 0xfe // the counter carries from the first ids on
	seen := make(map[string]bool)
	for i := range 100_000 {
		flags := byte(i % 4)
		id := g.next(flags)
		u, err := uuid.Parse(id)
		if err != nil || u.String() != id {
			t.Fatalf("id %d = %q: not a UUID as uuid writes it (%v)", i, id, err)
		}
		wantV := uuid.Version(4)
		if flags != 0 {
			wantV = 8
		}
		if u.Version() != wantV || u.Variant() != uuid.RFC4122 {
			t.Fatalf("id %q: version %d, variant %s; want %d, RFC4122", id, u.Version(), u.Variant(), wantV)
		}
		if got := transport.IDFlags(id); got != flags {
			t.Fatalf("IDFlags(%s) = %d, want %d", id, got, flags)
		}
		if seen[id] {
			t.Fatalf("id %q made twice (after %d)", id, i)
		}
		seen[id] = true
	}
	for i := range 10_000 { // with the same flags, too
		if id := g.next(idNack); seen[id] {
			t.Fatalf("id %q made twice (%d after the first ones)", id, i)
		} else {
			seen[id] = true
		}
	}
	if other := newIDs().next(0); seen[other] {
		t.Fatalf("another client's first id %q is one of this client's", other)
	}
}

func BenchmarkIDs(b *testing.B) {
	g := newIDs()
	b.ReportAllocs()
	for range b.N {
		_ = g.next(idNack)
	}
}
