package rpc

import (
	"sync"
	"time"
)

// seen remembers message ids for a while (oslo's rpc_message_ttl), so
// that a message sent again is acknowledged again but handled once; a
// CALL's reply is kept with it, to be sent again. Memory is bounded: at
// most max ids, the oldest forgotten first.
//
// A busy server remembers max ids all the time, so they are kept where
// the garbage collector has nothing to follow: message ids are UUIDs
// (oslo.messaging's and this package's), kept as 16 bytes in a map and a
// ring of slots without pointers. Only CALLs' replies (a slice beside the
// ring, made at the first CALL) and ids that are not UUIDs (a map) hold
// pointers.
type seen struct {
	ttl time.Duration
	max int

	mu      sync.Mutex
	byUUID  map[idKey]uint64  // id -> sequence number of its slot
	byStr   map[string]uint64 // ids that are not UUIDs
	strs    map[uint64]string // and back, by sequence number
	ring    []seenSlot        // slot of sequence number q: ring[q%max]
	replies [][]byte          // a CALL's reply, beside its slot; made at the first CALL
	oldest  uint64            // sequence number of the oldest id remembered
	next    uint64            // sequence number of the next id
}

// idKey is a UUID's 16 bytes.
type idKey [16]byte

type seenSlot struct {
	key     idKey // unless isStr
	isStr   bool
	done    bool  // a CALL answered: its reply is in replies
	expires int64 // unix nanoseconds
}

// seenEntry is what first reports of an id seen before.
type seenEntry struct {
	done  bool   // a CALL answered: reply is set (other types are never marked)
	reply []byte // the REPLY payload of a CALL
}

func newSeen(ttl time.Duration, max int) *seen {
	return &seen{ttl: ttl, max: max, byUUID: make(map[idKey]uint64), byStr: make(map[string]uint64),
		strs: make(map[uint64]string)}
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

// parseID returns the 16 bytes of id if id is a UUID written as
// uuid.UUID.String writes it (lower case, dashed), so that two ids are the
// same exactly when their strings are.
func parseID(id string) (k idKey, ok bool) {
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

// lookup is the sequence number of id; under mu.
func (s *seen) lookup(id string, k idKey, isUUID bool) (uint64, bool) {
	if isUUID {
		q, ok := s.byUUID[k]
		return q, ok
	}
	q, ok := s.byStr[id]
	return q, ok
}

// first records id and reports whether it is new. When it is not, the
// entry says whether it was handled and holds the reply of a CALL.
func (s *seen) first(id string, now time.Time) (fresh bool, e seenEntry) {
	k, isUUID := parseID(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now.UnixNano())
	if q, ok := s.lookup(id, k, isUUID); ok {
		slot := &s.ring[q%uint64(s.max)]
		e := seenEntry{done: slot.done}
		if slot.done {
			e.reply = s.replies[q%uint64(s.max)]
		}
		return false, e
	}
	if s.next-s.oldest == uint64(s.max) { // full: the oldest goes
		s.forgetOldest()
	}
	slot := seenSlot{key: k, isStr: !isUUID, expires: now.Add(s.ttl).UnixNano()}
	if isUUID {
		s.byUUID[k] = s.next
	} else {
		s.byStr[id] = s.next
		s.strs[s.next] = id
	}
	if i := int(s.next % uint64(s.max)); i < len(s.ring) {
		s.ring[i] = slot
	} else {
		s.ring = append(s.ring, slot) // the ring grows to max as ids come
	}
	s.next++
	return true, seenEntry{}
}

// done marks a CALL's id answered, with its reply.
func (s *seen) done(id string, reply []byte) {
	k, isUUID := parseID(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	if q, ok := s.lookup(id, k, isUUID); ok {
		i := q % uint64(s.max)
		if s.replies == nil {
			s.replies = make([][]byte, s.max)
		}
		s.ring[i].done = true
		s.replies[i] = reply
	}
}

// expire forgets ids past their TTL; under mu.
func (s *seen) expire(now int64) {
	for s.oldest < s.next && s.ring[s.oldest%uint64(s.max)].expires <= now {
		s.forgetOldest()
	}
}

// forgetOldest forgets the oldest id; under mu.
func (s *seen) forgetOldest() {
	q := s.oldest
	slot := &s.ring[q%uint64(s.max)]
	if slot.isStr {
		delete(s.byStr, s.strs[q])
		delete(s.strs, q)
	} else {
		delete(s.byUUID, slot.key)
	}
	if slot.done {
		s.replies[q%uint64(s.max)] = nil
	}
	*slot = seenSlot{}
	s.oldest++
}

func (s *seen) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return int(s.next - s.oldest)
}
