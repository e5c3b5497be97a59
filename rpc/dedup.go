package rpc

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// seen remembers message ids for a while (oslo's rpc_message_ttl), so
// that a message sent again is acknowledged again but handled once; a
// CALL's reply is kept with it, to be sent again.
//
// An id is remembered with its sender: two clients that use the same id
// are two messages, and one client cannot get another's cached reply by
// reusing its id. An id's time runs from its last use: a CALL's entry is
// renewed when its reply goes out, since its client may send it again
// until the reply reaches it, however long the handler took.
//
// Memory is bounded twice: at most max ids (the oldest forgotten first,
// counted as evicted when that comes before their TTL), and at most
// maxReplyBytes of cached replies (the oldest replies dropped first; their
// ids stay remembered, so the handler still does not run twice).
//
// A busy server remembers max ids all the time, so they are kept where
// the garbage collector has nothing to follow: message ids are UUIDs
// (oslo.messaging's and this package's), kept as 16 bytes beside a 64-bit
// hash of the sender in a map and a ring of slots without pointers. Only
// CALLs' replies (chunks beside the ring, made as CALLs come) and ids
// that are not UUIDs (a map) hold pointers.
type seen struct {
	ttl           time.Duration
	max           int
	maxReplyBytes int
	seed          maphash.Seed

	mu         sync.Mutex
	byUUID     map[idKey]uint64  // sender hash + id -> sequence number of its slot
	byStr      map[string]uint64 // ids that are not UUIDs: sender + "\x00" + id
	strs       map[uint64]string // and back, by sequence number
	ring       [][]seenSlot      // slot of sequence number q: at q%max, in chunks of seenChunk (at)
	replies    [][][]byte        // a CALL's reply, beside its slot, in chunks made as CALLs come (reply)
	replyBytes int               // the bytes in replies
	replyFrom  uint64            // no reply is cached before this sequence number
	oldest     uint64            // sequence number of the oldest slot
	next       uint64            // sequence number of the next slot
	evicted    atomic.Uint64     // ids forgotten before their TTL, for want of room
	dropped    atomic.Uint64     // replies dropped for want of room
}

// seenChunk is how many slots (or replies) are allocated at once: the
// ring grows to max by chunks as ids come, without copying what it holds
// (one slice grown by append copied and cleared the ring again and again,
// a third of a server's CPU until it was full), and a server that
// answers CALLs keeps chunks of replies only where it has some.
const seenChunk = 4096

// at is the slot of sequence number q; under mu. It must exist (below
// next, or the next one, which add makes).
func (s *seen) at(q uint64) *seenSlot {
	i := q % uint64(s.max)
	return &s.ring[i/seenChunk][i%seenChunk]
}

// reply is where the reply of sequence number q is kept; nil when its
// chunk holds none (and create is false); under mu.
func (s *seen) reply(q uint64, create bool) *[]byte {
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

// idKey is a UUID's 16 bytes and the sender's 8-byte hash.
type idKey [24]byte

type seenSlot struct {
	key     idKey // unless isStr
	isStr   bool
	dead    bool  // renewed: its id lives in a later slot
	done    bool  // a CALL answered: its reply is in replies, unless dropped
	expires int64 // unix nanoseconds
}

// seenEntry is what first reports of an id seen before.
type seenEntry struct {
	done  bool   // a CALL answered (other types are never marked)
	reply []byte // the REPLY payload of a CALL; nil when dropped for want of room
}

func newSeen(ttl time.Duration, max, maxReplyBytes int) *seen {
	return &seen{ttl: ttl, max: max, maxReplyBytes: maxReplyBytes, seed: maphash.MakeSeed(),
		byUUID: make(map[idKey]uint64), byStr: make(map[string]uint64), strs: make(map[uint64]string)}
}

// hexVal maps an ASCII byte to its value as a lower-case hex digit, or
// 0xff.
var hexVal = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for c := byte('0'); c <= '9'; c++ {
		t[c] = c - '0'
	}
	for c := byte('a'); c <= 'f'; c++ {
		t[c] = c - 'a' + 10
	}
	return t
}()

// parseUUID returns the 16 bytes of id if id is a UUID written as
// uuid.UUID.String writes it (lower case, dashed), so that two ids are the
// same exactly when their strings are.
func parseUUID(id string) (k [16]byte, ok bool) {
	if len(id) != 36 || id[8] != '-' || id[13] != '-' || id[18] != '-' || id[23] != '-' {
		return k, false
	}
	j := 0
	for i := 0; i < 36; i += 2 {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			i++
		}
		hi, lo := hexVal[id[i]], hexVal[id[i+1]]
		if hi|lo == 0xff {
			return k, false
		}
		k[j] = hi<<4 | lo
		j++
	}
	return k, true
}

// key is how (sender, id) is stored: a UUID's bytes and the sender's
// hash, or a string.
func (s *seen) key(sender, id string) (k idKey, str string, isUUID bool) {
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
func (s *seen) lookup(k idKey, str string, isUUID bool) (uint64, bool) {
	if isUUID {
		q, ok := s.byUUID[k]
		return q, ok
	}
	q, ok := s.byStr[str]
	return q, ok
}

// first records id from sender and reports whether it is new. When it is
// not, the entry says whether it was handled and holds the reply of a CALL.
func (s *seen) first(sender, id string, now time.Time) (fresh bool, e seenEntry) {
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
	s.add(seenSlot{key: k, isStr: !isUUID, expires: now.Add(s.ttl).UnixNano()}, str, now)
	return true, seenEntry{}
}

// add puts a slot at the tail, forgetting the oldest if the ring is full;
// under mu. It returns the slot's sequence number.
func (s *seen) add(slot seenSlot, str string, now time.Time) uint64 {
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
		s.ring = append(s.ring, make([]seenSlot, min(seenChunk, s.max-i)))
	}
	*s.at(s.next) = slot
	s.next++
	return s.next - 1
}

// done marks a CALL's id answered, with its reply, and renews its time:
// the entry moves to the tail, to be remembered for the TTL from now.
func (s *seen) done(sender, id string, reply []byte, now time.Time) {
	k, str, isUUID := s.key(sender, id)
	s.mu.Lock()
	defer s.mu.Unlock()
	q, ok := s.lookup(k, str, isUUID)
	if !ok {
		return // forgotten meanwhile (evicted): nothing to renew
	}
	old := s.at(q)
	slot := seenSlot{key: old.key, isStr: old.isStr, done: true, expires: now.Add(s.ttl).UnixNano()}
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
func (s *seen) dropReply(q uint64) {
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
func (s *seen) expire(now int64) {
	for s.oldest < s.next && s.at(s.oldest).expires <= now {
		s.forgetOldest()
	}
}

// forgetOldest forgets the oldest slot; under mu.
func (s *seen) forgetOldest() {
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
	*slot = seenSlot{}
	s.oldest++
	s.replyFrom = max(s.replyFrom, s.oldest)
}

// len is the number of ids remembered.
func (s *seen) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byUUID) + len(s.byStr)
}

// counts are the ids evicted before their TTL and the replies dropped, so
// far.
func (s *seen) counts() (evicted, dropped uint64) {
	return s.evicted.Load(), s.dropped.Load()
}
