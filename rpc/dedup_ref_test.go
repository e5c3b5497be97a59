package rpc

// Copied from dedup.go at 6aaaece, renamed: the reference TestSeenMatchesRef
// checks seen against.

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// seenRef is seen as it was before the windows of counters (commit
// 6aaaece): every id in a map. TestSeenMatchesRef compares the two.
type seenRef struct {
	ttl           time.Duration
	max           int
	maxReplyBytes int
	seed          maphash.Seed

	mu         sync.Mutex
	byUUID     map[idKey]uint64  // sender hash + id -> sequence number of its slot
	byStr      map[string]uint64 // ids that are not UUIDs: sender + "\x00" + id
	strs       map[uint64]string // and back, by sequence number
	ring       [][]refSlot       // slot of sequence number q: at q%max, in chunks of seenChunk (at)
	replies    [][][]byte        // a CALL's reply, beside its slot, in chunks made as CALLs come (reply)
	replyBytes int               // the bytes in replies
	replyFrom  uint64            // no reply is cached before this sequence number
	oldest     uint64            // sequence number of the oldest slot
	next       uint64            // sequence number of the next slot
	evicted    atomic.Uint64     // ids forgotten before their TTL, for want of room
	dropped    atomic.Uint64     // replies dropped for want of room
}

// at is the slot of sequence number q; under mu. It must exist (below
// next, or the next one, which add makes).
func (s *seenRef) at(q uint64) *refSlot {
	i := q % uint64(s.max)
	return &s.ring[i/seenChunk][i%seenChunk]
}

// reply is where the reply of sequence number q is kept; nil when its
// chunk holds none (and create is false); under mu.
func (s *seenRef) reply(q uint64, create bool) *[]byte {
	i := q % uint64(s.max)
	c := i / seenChunk
	if int(c) >= len(s.replies) || s.replies[c] == nil {
		if !create {
			return nil
		}
		if s.replies == nil {
			s.replies = make([][][]byte, (s.max+seenChunk-1)/seenChunk)
		}
		s.replies[c] = make([][]byte, min(seenChunk, s.max-int(c)*seenChunk))
	}
	return &s.replies[c][i%seenChunk]
}

type refSlot struct {
	key     idKey // unless isStr
	isStr   bool
	dead    bool  // renewed: its id lives in a later slot
	done    bool  // a CALL answered: its reply is in replies, unless dropped
	expires int64 // unix nanoseconds
}

func newSeenRef(ttl time.Duration, max, maxReplyBytes int) *seenRef {
	return &seenRef{ttl: ttl, max: max, maxReplyBytes: maxReplyBytes, seed: maphash.MakeSeed(),
		byUUID: make(map[idKey]uint64), byStr: make(map[string]uint64), strs: make(map[uint64]string)}
}

// key is how (sender, id) is stored: a UUID's bytes and the sender's
// hash, or a string.
func (s *seenRef) key(sender, id string) (k idKey, str string, isUUID bool) {
	u, isUUID := parseUUID(id)
	if !isUUID {
		return k, sender + "\x00" + id, false
	}
	copy(k[:16], u[:])
	h := maphash.String(s.seed, sender)
	for i := range 8 {
		k[16+i] = byte(h >> (8 * i))
	}
	return k, "", true
}

// lookup is the sequence number of a key; under mu.
func (s *seenRef) lookup(k idKey, str string, isUUID bool) (uint64, bool) {
	if isUUID {
		q, ok := s.byUUID[k]
		return q, ok
	}
	q, ok := s.byStr[str]
	return q, ok
}

// first records id from sender and reports whether it is new. When it is
// not, the entry says whether it was handled and holds the reply of a CALL.
func (s *seenRef) first(sender, id string, now time.Time) (fresh bool, e seenEntry) {
	k, str, isUUID := s.key(sender, id)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now.UnixNano())
	if q, ok := s.lookup(k, str, isUUID); ok {
		slot := s.at(q)
		e := seenEntry{done: slot.done}
		if r := s.reply(q, false); slot.done && r != nil {
			e.reply = *r
		}
		return false, e
	}
	s.add(refSlot{key: k, isStr: !isUUID, expires: now.Add(s.ttl).UnixNano()}, str, now)
	return true, seenEntry{}
}

// add puts a slot at the tail, forgetting the oldest if the ring is full;
// under mu. It returns the slot's sequence number.
func (s *seenRef) add(slot refSlot, str string, now time.Time) uint64 {
	if s.next-s.oldest == uint64(s.max) { // full: the oldest goes
		if old := s.at(s.oldest); !old.dead && old.expires > now.UnixNano() {
			s.evicted.Add(1)
		}
		s.forgetOldest()
	}
	if slot.isStr {
		s.byStr[str] = s.next
		s.strs[s.next] = str
	} else {
		s.byUUID[slot.key] = s.next
	}
	if i := int(s.next % uint64(s.max)); i/seenChunk == len(s.ring) { // the ring grows to max as ids come
		s.ring = append(s.ring, make([]refSlot, min(seenChunk, s.max-i)))
	}
	*s.at(s.next) = slot
	s.next++
	return s.next - 1
}

// done marks a CALL's id answered, with its reply, and renews its time:
// the entry moves to the tail, to be remembered for the TTL from now.
func (s *seenRef) done(sender, id string, reply []byte, now time.Time) {
	k, str, isUUID := s.key(sender, id)
	s.mu.Lock()
	defer s.mu.Unlock()
	q, ok := s.lookup(k, str, isUUID)
	if !ok {
		return // forgotten meanwhile (evicted): nothing to renew
	}
	old := s.at(q)
	slot := refSlot{key: old.key, isStr: old.isStr, done: true, expires: now.Add(s.ttl).UnixNano()}
	s.dropReply(q)
	old.dead = true // its map entry now names the new slot
	q = s.add(slot, str, now)
	if len(reply) > s.maxReplyBytes {
		s.dropped.Add(1)
		return
	}
	for s.replyBytes+len(reply) > s.maxReplyBytes && s.replyFrom < q {
		s.dropReply(s.replyFrom)
		s.replyFrom++
	}
	*s.reply(q, true) = reply
	s.replyBytes += len(reply)
}

// dropReply forgets the reply cached in slot q, if any; under mu.
func (s *seenRef) dropReply(q uint64) {
	if q < s.oldest || q >= s.next {
		return
	}
	if r := s.reply(q, false); r != nil && *r != nil {
		s.replyBytes -= len(*r)
		*r = nil
		if !s.at(q).dead {
			s.dropped.Add(1)
		}
	}
}

// expire forgets ids past their TTL; under mu.
func (s *seenRef) expire(now int64) {
	for s.oldest < s.next && s.at(s.oldest).expires <= now {
		s.forgetOldest()
	}
}

// forgetOldest forgets the oldest slot; under mu.
func (s *seenRef) forgetOldest() {
	q := s.oldest
	slot := s.at(q)
	if !slot.dead {
		if slot.isStr {
			delete(s.byStr, s.strs[q])
		} else {
			delete(s.byUUID, slot.key)
		}
	}
	if slot.isStr {
		delete(s.strs, q)
	}
	if r := s.reply(q, false); r != nil && *r != nil {
		s.replyBytes -= len(*r)
		*r = nil
	}
	*slot = refSlot{}
	s.oldest++
	s.replyFrom = max(s.replyFrom, s.oldest)
}

// len is the number of ids remembered.
func (s *seenRef) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byUUID) + len(s.byStr)
}

// counts are the ids evicted before their TTL and the replies dropped, so
// far.
func (s *seenRef) counts() (evicted, dropped uint64) {
	return s.evicted.Load(), s.dropped.Load()
}
