package transport

import (
	"sync/atomic"
	"syscall"
	"time"
)

// ConnLimit bounds the connections a process accepts, across the sockets
// that share it, so that no crowd of peers can take every file descriptor.
type ConnLimit struct {
	max int64
	n   atomic.Int64
}

// NewConnLimit allows at most max connections at once (max >= 1).
func NewConnLimit(max int) *ConnLimit { return &ConnLimit{max: int64(max)} }

// Max is the limit.
func (l *ConnLimit) Max() int { return int(l.max) }

// acquire takes one connection slot; false when none is left. A nil
// limit always succeeds.
func (l *ConnLimit) acquire() bool {
	if l == nil {
		return true
	}
	if l.n.Add(1) > l.max {
		l.n.Add(-1)
		return false
	}
	return true
}

func (l *ConnLimit) release() {
	if l != nil {
		l.n.Add(-1)
	}
}

// fdReserve are the file descriptors DefaultMaxConnections leaves for
// everything that is not a peer: listeners, the registry client, the
// metrics server, logs.
const fdReserve = 64

// DefaultMaxConnections is the soft RLIMIT_NOFILE (which Go raises to the
// hard limit at start) less a reserve, at least 1.
func DefaultMaxConnections() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur > 1<<30 {
		return 1 << 20
	}
	return max(int(rl.Cur)-fdReserve, 1)
}

// logWarnEvery is the least time between two warnings of one kind from
// one socket.
const logWarnEvery = time.Minute

// LogLimit lets one log line through per minute, from any number of
// goroutines, so that no peer can flood the log; the line carries the
// running count of what it reports instead.
type LogLimit struct{ last atomic.Int64 }

// Allow reports whether a line may be logged now.
func (l *LogLimit) Allow(now time.Time) bool {
	last := l.last.Load()
	if last != 0 && now.UnixNano()-last < int64(logWarnEvery) {
		return false
	}
	return l.last.CompareAndSwap(last, now.UnixNano())
}
