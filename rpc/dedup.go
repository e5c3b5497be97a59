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
//
// Most ids need no map at all: this package's clients number their ids
// (ids: a random prefix and a counter), so a sender's ids with one prefix
// are remembered in a window of counters, a bitmap (run). Only a CALL's id
// is also put in the map, where its slot (and reply) is found; an id that
// is no UUID, whose prefix is not its sender's run's, or whose counter
// the window cannot hold takes the map as before, and while a run's
// sender has such ids, an id the window has not seen is also looked up
// in the map.
type seen struct {
	ttl           time.Duration
	max           int
	maxReplyBytes int
	seed          maphash.Seed

	mu         sync.Mutex
	byUUID     map[idKey]uint64  // sender hash + id -> sequence number of its slot
	byStr      map[string]uint64 // ids that are not UUIDs: sender + "\x00" + id
	strs       map[uint64]string // and back, by sequence number
	runs       map[uint64]*run   // by sender hash
	winBits    int64             // the runs' bits may grow by this many more (2 largest windows in all)
	remembered int               // ids remembered (len)
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
	win     bool  // its bit is set in its sender's run
	inMap   bool  // a UUID in byUUID: not win, or a CALL's
	expires int64 // unix nanoseconds
}

// run is a sender's window of counters: the ids with its prefix (a UUID's
// first 10 bytes; the last 6 are the counter) and a counter in [lo,
// lo+64*len(bits)) are remembered exactly when their bit (counter mod
// the window's size) is set, or, while mapOnly > 0, when they are in the
// map.
type run struct {
	prefix  [10]byte
	lo      uint64
	bits    []uint64
	live    int // bits set
	mapOnly int // the sender's UUIDs remembered in the map alone (any prefix)
}

// Window sizes: a run starts with runMinBits and doubles, up to the
// power of two that holds max counters, while at least one bit in
// runDensity is set, so that its bitmap never takes more than 8 bytes per
// id it holds (the map takes more) when it grows, and while all windows'
// bits together stay within twice the largest window (a run that held
// many ids keeps its bits while it holds any).
const (
	runMinBits = 64
	runDensity = 32
)

func counterOf(k *idKey) uint64 {
	var c uint64
	for _, b := range k[10:16] {
		c = c<<8 | uint64(b)
	}
	return c
}

func senderOf(k *idKey) uint64 {
	var h uint64
	for i := range 8 {
		h |= uint64(k[16+i]) << (8 * i)
	}
	return h
}

func (r *run) size() uint64 { return uint64(len(r.bits)) * 64 }

func (r *run) bit(c uint64) bool {
	i := c % r.size()
	return r.bits[i/64]>>(i%64)&1 != 0
}

func (r *run) flip(c uint64) {
	i := c % r.size()
	r.bits[i/64] ^= 1 << (i % 64)
}

// holds makes the window hold counter c if it can: sliding it forward
// over counters whose bits are clear, or growing it (up to maxBits,
// while dense enough and while *budget, which growth spends, allows). It
// reports whether c is in the window.
func (r *run) holds(c uint64, maxBits uint64, budget *int64) bool {
	for {
		if c >= r.lo && c-r.lo < r.size() {
			return true
		}
		if r.live == 0 {
			r.lo = c
			return true
		}
		if c < r.lo {
			return false
		}
		// Slide: the counters from lo to c-size+1 leave, as far as their
		// bits are clear (lo only moves forward: each counter is passed
		// once).
		to := c - r.size() + 1
		q := r.lo
		for q < to {
			if i := q % r.size(); i%64 == 0 && to-q >= 64 && r.bits[i/64] == 0 {
				q += 64
				continue
			}
			if r.bit(q) {
				break
			}
			q++
		}
		r.lo = q
		if q == to {
			return true
		}
		if r.size()*2 > maxBits || uint64(r.live)*runDensity < r.size() || *budget < int64(r.size()) {
			return false
		}
		*budget -= int64(r.size())
		r.grow()
	}
}

// grow doubles the window, its bits moved to where the counters they
// stand for fall in the larger one.
func (r *run) grow() {
	old, n := r.bits, r.size()
	r.bits = make([]uint64, 2*len(old))
	for i := range n {
		if old[i/64]>>(i%64)&1 != 0 {
			c := r.lo + (i+n-r.lo%n)%n // the counter in [lo, lo+n) at index i
			r.flip(c)
		}
	}
}

// seenEntry is what first reports of an id seen before.
type seenEntry struct {
	done  bool   // a CALL answered (other types are never marked)
	reply []byte // the REPLY payload of a CALL; nil when dropped for want of room
}

func newSeen(ttl time.Duration, max, maxReplyBytes int) *seen {
	s := &seen{ttl: ttl, max: max, maxReplyBytes: maxReplyBytes, seed: maphash.MakeSeed(),
		byUUID: make(map[idKey]uint64), byStr: make(map[string]uint64), strs: make(map[uint64]string),
		runs: make(map[uint64]*run)}
	s.winBits = 2 * int64(s.maxBits())
	return s
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
// It is firstOf for a CALL: done may follow.
func (s *seen) first(sender, id string, now time.Time) (fresh bool, e seenEntry) {
	return s.firstOf(sender, id, true, now)
}

// firstOf is first; call says whether the message is a CALL, the only
// type whose id done may mark.
func (s *seen) firstOf(sender, id string, call bool, now time.Time) (fresh bool, e seenEntry) {
	k, str, isUUID := s.key(sender, id)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now.UnixNano())
	slot := seenSlot{key: k, isStr: !isUUID, inMap: isUUID, expires: now.Add(s.ttl).UnixNano()}
	var r *run
	var c uint64
	if isUUID {
		h := senderOf(&k)
		if r = s.runs[h]; r == nil {
			r = &run{bits: make([]uint64, runMinBits/64)}
			s.winBits -= runMinBits
			copy(r.prefix[:], k[:10])
			s.runs[h] = r
		}
		c = counterOf(&k)
		if [10]byte(k[:10]) != r.prefix && r.live == 0 && r.mapOnly == 0 {
			copy(r.prefix[:], k[:10]) // the sender has nothing remembered: its run takes this prefix
		}
		if [10]byte(k[:10]) == r.prefix && r.holds(c, s.maxBits(), &s.winBits) {
			slot.win, slot.inMap = true, call
			if r.bit(c) || r.mapOnly > 0 {
				if e, ok := s.entry(k, "", true); ok || r.bit(c) {
					return false, e // a CAST's id in the window has no entry: not done
				}
			}
			r.flip(c)
			r.live++
			s.add(slot, "", now)
			s.remembered++
			return true, seenEntry{}
		}
	}
	if e, ok := s.entry(k, str, isUUID); ok {
		return false, e
	}
	if r != nil {
		r.mapOnly++
	}
	s.add(slot, str, now)
	s.remembered++
	return true, seenEntry{}
}

// maxBits is the largest window: the power of two that holds max
// counters.
func (s *seen) maxBits() uint64 {
	n := uint64(runMinBits)
	for n < uint64(s.max) {
		n *= 2
	}
	return n
}

// entry is what the map holds of a key; under mu.
func (s *seen) entry(k idKey, str string, isUUID bool) (seenEntry, bool) {
	q, ok := s.lookup(k, str, isUUID)
	if !ok {
		return seenEntry{}, false
	}
	slot := s.at(q)
	e := seenEntry{done: slot.done}
	if r := s.reply(q, false); slot.done && r != nil {
		e.reply = *r
	}
	return e, true
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
	} else if slot.inMap {
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
	slot := seenSlot{key: old.key, isStr: old.isStr, win: old.win, inMap: old.inMap, done: true, expires: now.Add(s.ttl).UnixNano()}
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
			if slot.inMap {
				delete(s.byUUID, slot.key)
			}
			h := senderOf(&slot.key)
			r := s.runs[h]
			if slot.win {
				r.flip(counterOf(&slot.key))
				r.live--
			} else {
				r.mapOnly--
			}
			if r.live == 0 && r.mapOnly == 0 {
				delete(s.runs, h)
				s.winBits += int64(r.size())
			}
		}
		s.remembered--
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
	return s.remembered
}

// counts are the ids evicted before their TTL and the replies dropped, so
// far.
func (s *seen) counts() (evicted, dropped uint64) {
	return s.evicted.Load(), s.dropped.Load()
}
