package transport

import (
	"net"
	"sync"
)

// keepWriteBuf is the largest write buffer a peer keeps between bursts;
// a larger one (after a burst of big messages) goes back to the GC.
const keepWriteBuf = 1 << 20

// peer is one ZMTP connection after the handshake: one bounded outbound
// queue drained by one writer goroutine, and one reader goroutine.
//
// Senders encode whole messages into the queue's buffer under mu; the
// writer takes the buffer whole and writes it with one syscall, so a burst
// costs one write however many messages it holds. The queue holds at most
// hwm messages; a message beyond that is dropped (as libzmq does at its
// high-water mark), so a slow peer never blocks anyone but itself. As in
// libzmq, what has been handed to the kernel does not count: the batch the
// writer is writing is like libzmq's encoder buffer and the socket buffer.
// So a peer holds at most two queues' worth: hwm queued and one batch (of at
// most hwm) being written.
type peer struct {
	id   []byte
	conn net.Conn
	sock *socket

	mu       sync.Mutex
	buf      []byte // encoded messages not yet taken by the writer
	spare    []byte // the writer's previous buffer, reused
	queued   int    // messages and commands in buf
	hwm      int    // bound on queued
	hwmBytes int    // bound on len(buf), but for one message into an empty buf
	pong     bool   // a PONG is in buf
	dead     bool
	wake     chan struct{} // cap 1: buf went from empty to non-empty
	done     chan struct{} // closed when the peer is shut down
	doneOnce sync.Once

	filter filterRef // PUB only: what this subscriber asked for
	seen   uint64    // PUB only: the last publish that reached it (Pub.pubMu)
}

func newPeer(s *socket, id []byte, conn net.Conn) *peer {
	return &peer{
		id:       id,
		conn:     conn,
		sock:     s,
		hwm:      s.opts.HWM,
		hwmBytes: s.opts.HWMBytes,
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
}

// send queues the message head+tail. It returns false, without queueing,
// when the peer is at its high-water mark (in messages or in bytes) or gone.
func (p *peer) send(head, tail [][]byte) bool {
	p.mu.Lock()
	if p.dead || p.queued >= p.hwm || len(p.buf) > 0 && len(p.buf)+encodedLen(head, tail) > p.hwmBytes {
		p.mu.Unlock()
		return false
	}
	wasEmpty := len(p.buf) == 0
	p.buf = appendMsg(p.buf, head, tail)
	p.queued++
	p.mu.Unlock()
	if wasEmpty {
		p.signal()
	}
	return true
}

// sendPong queues a PONG with the given context (at most 16 bytes), unless
// one is queued already: a peer that pings and never reads gets one PONG
// waiting, not one per PING. The PONG counts toward the peer's bounds, so
// data behind it is dropped first. It reports whether it queued.
func (p *peer) sendPong(context []byte) bool {
	p.mu.Lock()
	if p.dead || p.pong {
		p.mu.Unlock()
		return false
	}
	wasEmpty := len(p.buf) == 0
	p.buf = appendCommand(p.buf, "PONG", context)
	p.queued++
	p.pong = true
	p.mu.Unlock()
	if wasEmpty {
		p.signal()
	}
	return true
}

func (p *peer) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// writeLoop is the peer's only writer. It returns when the connection
// fails or the peer is shut down.
func (p *peer) writeLoop() error {
	for {
		select {
		case <-p.wake:
		case <-p.done:
			return nil
		}
		p.mu.Lock()
		out := p.buf
		p.buf, p.spare = p.spare[:0], nil
		p.queued, p.pong = 0, false
		p.mu.Unlock()
		if len(out) == 0 {
			continue
		}
		_, err := p.conn.Write(out)
		if cap(out) > keepWriteBuf {
			out = nil
		}
		p.mu.Lock()
		p.spare = out[:0]
		p.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// shutdown stops the writer and closes the connection, which ends the
// reader. Safe to call from any goroutine, any number of times.
func (p *peer) shutdown() {
	p.doneOnce.Do(func() {
		p.mu.Lock()
		p.dead = true
		p.buf, p.spare = nil, nil
		p.mu.Unlock()
		close(p.done)
		p.conn.Close()
	})
}

// sendControl queues a message that must not be lost to the high-water
// mark (this socket's own subscriptions, bounded by what its owner
// subscribes): it bypasses the limit, but counts toward it, so data
// queued behind it meets the mark sooner.
func (p *peer) sendControl(msg [][]byte) {
	p.mu.Lock()
	if p.dead {
		p.mu.Unlock()
		return
	}
	wasEmpty := len(p.buf) == 0
	p.buf = appendMsg(p.buf, msg, nil)
	p.queued++
	p.mu.Unlock()
	if wasEmpty {
		p.signal()
	}
}
