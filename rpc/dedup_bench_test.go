package rpc

import (
	"testing"
	"time"

	"github.com/google/uuid"
)

// BenchmarkSeen is a server's memory of message ids at its bound
// (DefaultMaxSeen ids): one new id per message. The id is made in the
// loop, as a message's arrives hot in the cache. CallUUIDs: random ids
// (oslo.messaging's), first and done, in the map; CastClientIDs: a
// client's numbered ids, first, in its window.
func BenchmarkSeen(b *testing.B) {
	b.Run("CallUUIDs", func(b *testing.B) {
		s := newSeen(time.Minute, DefaultMaxSeen, DefaultMaxReplyBytes)
		now := time.Now()
		b.ReportAllocs()
		for b.Loop() {
			id := uuid.NewString()
			if fresh, _ := s.first("host/client", id, now); fresh {
				s.done("host/client", id, nil, now)
			}
		}
	})
	b.Run("CastClientIDs", func(b *testing.B) {
		s := newSeen(time.Minute, DefaultMaxSeen, DefaultMaxReplyBytes)
		g := newIDs()
		now := time.Now()
		b.ReportAllocs()
		for b.Loop() {
			s.firstOf("host/client", g.next(0), false, now)
		}
	})
}
