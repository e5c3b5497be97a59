package rpc

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/uuid"
)

// seenOp is one id a server receives: from sender, a CALL or not.
type seenOp struct {
	sender, id string
	call       bool
}

// TestSeenMatchesRef: seen, with its windows of counters, answers as the
// map-only seen before it (seenRef) for any mix of ids: this package's
// (two clients per sender, with and without flags, counters skipping
// ahead as a client's do when it sends to other servers too, and far
// ahead, past a window), oslo.messaging's random UUIDs and ids that are
// not UUIDs, repeated in any order, with CALLs answered at once or later,
// replies cached and dropped, ids expiring and evicted at MaxSeen.
func TestSeenMatchesRef(t *testing.T) {
	for seed := range uint64(40) {
		rng := rand.New(rand.NewPCG(seed, 7))
		ttl := 10 * time.Second
		max := 20 + rng.IntN(400)
		maxReply := 50 + rng.IntN(200)
		s, ref := newSeen(ttl, max, maxReply), newSeenRef(ttl, max, maxReply)
		senders := []string{"host/a", "host/b", "host/c"}
		gens := map[string][]*ids{}
		for _, sd := range senders {
			gens[sd] = []*ids{newIDs(), newIDs()}
		}
		var sent []seenOp
		var pending []seenOp // fresh CALLs not answered yet
		now := time.Unix(1e9, 0)
		for step := range 4000 {
			if rng.IntN(50) == 0 {
				now = now.Add(time.Duration(rng.Int64N(int64(ttl / 3))))
			}
			var op seenOp
			switch k := rng.IntN(20); {
			case k < 3 && len(sent) > 0: // a resend
				op = sent[len(sent)-1-rng.IntN(min(len(sent), 1+rng.IntN(2*max)))]
				op.call = rng.IntN(2) == 0
			case k < 4:
				op = seenOp{sender: senders[rng.IntN(3)], id: uuid.NewString()}
			case k < 5:
				op = seenOp{sender: senders[rng.IntN(3)], id: fmt.Sprintf("x%d", rng.IntN(50))}
			default:
				sd := senders[rng.IntN(3)]
				g := gens[sd][rng.IntN(2)]
				if rng.IntN(10) == 0 {
					g = gens[sd][0]
				}
				switch rng.IntN(40) {
				case 0: // far ahead: past any window
					g.n.Add(uint64(1 + rng.IntN(5000)))
				case 1: // a new client with the sender's identity
					gens[sd][1] = newIDs()
				default: // messages to other servers
					g.n.Add(uint64(rng.IntN(3)))
				}
				flags := byte(0)
				if rng.IntN(8) == 0 {
					flags = idAck
				}
				op = seenOp{sender: sd, id: g.next(flags)}
			}
			if op.call == false && rng.IntN(3) == 0 {
				op.call = true
			}
			fresh, e := s.firstOf(op.sender, op.id, op.call, now)
			rfresh, re := ref.first(op.sender, op.id, now)
			if fresh != rfresh || e.done != re.done || string(e.reply) != string(re.reply) || (e.reply == nil) != (re.reply == nil) {
				t.Fatalf("seed %d step %d: %+v: fresh %v done %v reply %q; ref: fresh %v done %v reply %q",
					seed, step, op, fresh, e.done, e.reply, rfresh, re.done, re.reply)
			}
			sent = append(sent, op)
			if fresh && op.call {
				pending = append(pending, op)
			}
			for len(pending) > 0 && rng.IntN(3) != 0 { // answered, the oldest or another
				i := rng.IntN(len(pending))
				p := pending[i]
				pending = append(pending[:i], pending[i+1:]...)
				reply := []byte(fmt.Sprintf("r%d-%s", step, make([]byte, rng.IntN(40))))
				s.done(p.sender, p.id, reply, now)
				ref.done(p.sender, p.id, reply, now)
			}
			if s.len() != ref.len() {
				t.Fatalf("seed %d step %d: %d ids remembered, ref %d", seed, step, s.len(), ref.len())
			}
			ev, dr := s.counts()
			rev, rdr := ref.counts()
			if ev != rev || dr != rdr {
				t.Fatalf("seed %d step %d: evicted %d dropped %d; ref %d %d", seed, step, ev, dr, rev, rdr)
			}
		}
	}
}

// A client's CASTs are remembered in its window, not in the map; its
// CALLs' ids are in both (their replies are found by the map); the
// window, the map and the runs are empty again once the ids expire.
func TestSeenWindowKeepsMapSmall(t *testing.T) {
	now := time.Unix(1e9, 0)
	s := newSeen(time.Minute, DefaultMaxSeen, DefaultMaxReplyBytes)
	g := newIDs()
	var ids []string
	for range 10000 {
		id := g.next(0)
		ids = append(ids, id)
		if fresh, _ := s.firstOf("host/c", id, false, now); !fresh {
			t.Fatalf("%s: not fresh", id)
		}
	}
	for _, id := range ids {
		if fresh, _ := s.firstOf("host/c", id, false, now); fresh {
			t.Fatalf("%s sent again: fresh", id)
		}
	}
	call := g.next(0)
	s.firstOf("host/c", call, true, now)
	s.done("host/c", call, []byte("r"), now)
	if fresh, e := s.firstOf("host/c", call, true, now); fresh || string(e.reply) != "r" {
		t.Fatalf("the CALL sent again: fresh %v, reply %q", fresh, e.reply)
	}
	if s.len() != 10001 || len(s.byUUID) != 1 || len(s.runs) != 1 || s.runs[senderOf(&s.at(0).key)].live != 10001 {
		t.Fatalf("%d remembered, %d in the map, %d runs; want 10001, 1 (the CALL), 1", s.len(), len(s.byUUID), len(s.runs))
	}
	s.firstOf("host/other", "y", false, now.Add(2*time.Minute)) // all expired
	if s.len() != 1 || len(s.byUUID) != 0 || len(s.runs) != 0 {
		t.Fatalf("after the TTL: %d remembered, %d in the map, %d runs; want 1, 0, 0", s.len(), len(s.byUUID), len(s.runs))
	}
}

// The windows' bits together stay within twice the largest window
// (16384 bits for MaxSeen 10000), however many senders grow theirs; the
// ids the windows cannot take go to the map, and are still found. The
// budget comes back when a run is forgotten.
func TestSeenWindowsBudget(t *testing.T) {
	now := time.Unix(1e9, 0)
	s := newSeen(time.Minute, 10000, DefaultMaxReplyBytes)
	bits := func() (n uint64) {
		for _, r := range s.runs {
			n += r.size()
		}
		return n
	}
	var sent []seenOp
	for i := range 8 { // 8 senders, 1200 ids each, every 16th counter (the rest to other servers): each window would grow to 16384 bits
		g := newIDs()
		for range 1200 {
			g.n.Add(15)
			op := seenOp{sender: fmt.Sprintf("host/%d", i), id: g.next(0)}
			s.firstOf(op.sender, op.id, false, now)
			sent = append(sent, op)
		}
	}
	if b, most := bits(), uint64(2*16384+8*runMinBits); b > most || len(s.byUUID) == 0 {
		t.Fatalf("%d bits in the windows (at most %d), %d ids in the map (some, for want of bits)", b, most, len(s.byUUID))
	}
	for _, op := range sent {
		if fresh, _ := s.firstOf(op.sender, op.id, false, now); fresh {
			t.Fatalf("%+v sent again: fresh", op)
		}
	}
	s.firstOf("host/x", "y", false, now.Add(2*time.Minute)) // all expired
	if s.winBits != 2*16384 || len(s.runs) != 0 {
		t.Fatalf("after the TTL: budget %d bits, %d runs; want %d, 0", s.winBits, len(s.runs), 2*16384)
	}
}
