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
	queued   int    // messages in buf
	hwm      int
	dead     bool
	wake     chan struct{} // cap 1: buf went from empty to non-empty
	done     chan struct{} // closed when the peer is shut down
	doneOnce sync.Once

	filter filterRef // PUB only: what this subscriber asked for
}

func newPeer(s *socket, id []byte, conn net.Conn) *peer {
	return &peer{
		id:   id,
		conn: conn,
		sock: s,
		hwm:  s.opts.HWM,
		wake: make(chan struct{}, 1),
		done: make(chan struct{}),
	}
}

// send queues the message head+tail. It returns false, without queueing,
// when the peer is at its high-water mark or gone.
func (p *peer) send(head, tail [][]byte) bool {
	p.mu.Lock()
	if p.dead || p.queued >= p.hwm {
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

// sendCommand queues a ZMTP command; commands bypass the high-water mark
// (they are small and rare, and a PONG must not be dropped).
func (p *peer) sendCommand(name string, data []byte) {
	p.mu.Lock()
	if p.dead {
		p.mu.Unlock()
		return
	}
	wasEmpty := len(p.buf) == 0
	p.buf = appendCommand(p.buf, name, data)
	p.mu.Unlock()
	if wasEmpty {
		p.signal()
	}
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
		p.queued = 0
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
// mark (subscriptions): it bypasses the limit, like sendCommand.
func (p *peer) sendControl(msg [][]byte) {
	p.mu.Lock()
	if p.dead {
		p.mu.Unlock()
		return
	}
	wasEmpty := len(p.buf) == 0
	p.buf = appendMsg(p.buf, msg, nil)
	p.mu.Unlock()
	if wasEmpty {
		p.signal()
	}
}
