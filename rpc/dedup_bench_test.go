package rpc

import (
	"testing"
	"time"

	"github.com/google/uuid"
)

// BenchmarkSeen is a server's memory of message ids at its bound
// (DefaultMaxSeen ids): one new id per message, first and done. The id is
// made in the loop, as a message's arrives hot in the cache.
func BenchmarkSeen(b *testing.B) {
	s := newSeen(time.Minute, DefaultMaxSeen, DefaultMaxReplyBytes)
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		id := uuid.NewString()
		if fresh, _ := s.first("host/client", id, now); fresh {
			s.done("host/client", id, nil, now)
		}
	}
}
