package rpc

import (
	"sync"
	"time"
)

// seen remembers message ids for a while (oslo's rpc_message_ttl), so
// that a message sent again is acknowledged again but handled once; a
// CALL's reply is kept with it, to be sent again. Memory is bounded: at
// most max ids, the oldest forgotten first.
type seen struct {
	ttl time.Duration
	max int

	mu    sync.Mutex
	byID  map[string]*seenEntry
	order []*seenEntry // by arrival; expired ones are cut from the front
	head  int
}

type seenEntry struct {
	id      string
	expires time.Time
	done    bool   // a CALL answered: reply is set (other types are never marked)
	reply   []byte // the REPLY payload of a CALL
}

func newSeen(ttl time.Duration, max int) *seen {
	return &seen{ttl: ttl, max: max, byID: make(map[string]*seenEntry)}
}

// first records id and reports whether it is new. When it is not, the
// entry says whether it was handled and holds the reply of a CALL.
func (s *seen) first(id string, now time.Time) (fresh bool, e seenEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now)
	if old, ok := s.byID[id]; ok {
		return false, *old
	}
	if len(s.byID) >= s.max { // full: the oldest goes
		s.forgetOldest()
	}
	ne := &seenEntry{id: id, expires: now.Add(s.ttl)}
	s.byID[id] = ne
	s.order = append(s.order, ne)
	return true, seenEntry{}
}

// done marks a CALL's id answered, with its reply.
func (s *seen) done(id string, reply []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.byID[id]; ok {
		e.done, e.reply = true, reply
	}
}

// expire forgets ids past their TTL; under mu.
func (s *seen) expire(now time.Time) {
	for s.head < len(s.order) && !now.Before(s.order[s.head].expires) {
		s.forgetOldest()
	}
}

// forgetOldest forgets the oldest id; under mu.
func (s *seen) forgetOldest() {
	delete(s.byID, s.order[s.head].id)
	s.order[s.head] = nil
	s.head++
	if s.head > 1024 && s.head*2 > len(s.order) {
		s.order = append([]*seenEntry(nil), s.order[s.head:]...)
		s.head = 0
	}
}

func (s *seen) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byID)
}
