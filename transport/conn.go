package transport

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-zeromq/zmq4"

	"github.com/zmq-proxy/zmq-proxy/transport/security"
)

// One connection's life, in the order it happens (as nats-server keeps a
// client's readLoop, parse, deliver and writeLoop in one file): serve
// does the handshake and attaches the peer, starts the writer (writeLoop)
// and runs the reader (msgReader.run) on its own goroutine; the reader's
// frame parser (frameParser) and the Batch it hands on to the socket's
// role follow; then the peer's state (its bounded outbound queue, and the
// writers that empty it), and at the end the encoding of frames into
// that queue. Of a message's path through a proxy, this file is the
// first and the last step (docs/ownership.md, "The path of a CAST").

// serve runs one connection to its end: handshake, attach, then the
// writer on a goroutine of its own and the reader on this one. h is the
// accepted connection's place in the handshake limit, nil for a dialed
// one. It reports whether the peer was attached, so that a dialer can
// tell a failed handshake from a session.
func (s *socket) serve(conn net.Conn, h *pendingConn) (attached bool) {
	server := h != nil
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	// Close must not wait for the handshake timeout of a stalled peer.
	raw := conn // conn becomes the secure connection, if any (secure.go)
	stop := context.AfterFunc(s.ctx, func() { raw.Close() })
	var greet *greetConn
	if server {
		greet = newGreetConn(conn, s.opts.GreetingTimeout)
		conn = greet
	}
	meta, conn, err := s.connHandshake(conn, server)
	stop()
	conn = unwrapGreet(conn)
	if server {
		s.opts.Handshakes.done(h)
	}
	if err != nil {
		s.opts.Stats.BadHandshake.Add(1)
		if errors.Is(err, ErrOversize) {
			s.opts.Stats.DroppedOversize.Add(1)
		}
		if greet != nil && greet.timedOut {
			n := s.opts.Stats.RefusedGreetingTimeout.Add(1)
			if s.warn.greeting.Allow(time.Now()) {
				s.log.Warn("connection closed: no greeting in time", "remote", conn.RemoteAddr().String(),
					"timeout", s.opts.GreetingTimeout, "refused_total", n)
			}
		}
		s.log.Debug("handshake failed", "remote", conn.RemoteAddr().String(), "err", err)
		conn.Close()
		return false
	}
	if id := meta["Identity"]; len(id) > maxIdentity {
		// ZMTP 3 (RFC 23) bounds a routing id to 255 bytes; libzmq
		// refuses a longer one in the handshake.
		n := s.opts.Stats.RefusedIdentity.Add(1)
		if s.warn.identity.Allow(time.Now()) {
			s.log.Warn("peer refused: identity too long", "remote", conn.RemoteAddr().String(),
				"length", len(id), "limit", maxIdentity, "refused_total", n)
		}
		conn.Close()
		return false
	}
	if server {
		// Only established peers count toward --max-connections: one
		// that waits in its handshake holds a handshake slot instead.
		if !s.opts.Conns.acquire() {
			n := s.opts.Stats.RefusedMaxConns.Add(1)
			conn.Close()
			if s.warn.conns.Allow(time.Now()) {
				s.log.Warn("connection refused: too many connections", "remote", conn.RemoteAddr().String(),
					"limit", s.opts.Conns.Max(), "refused_total", n)
			}
			return false
		}
		defer s.opts.Conns.release()
	}
	p := newPeer(s, nil, conn)
	if s.opts.Heartbeat > 0 {
		p.wrote = new(atomic.Int64)
	}
	s.mu.Lock()
	if s.ctx.Err() != nil {
		s.mu.Unlock()
		conn.Close()
		return false
	}
	if err := s.role.attach(p, meta); err != nil {
		s.mu.Unlock()
		n := s.opts.Stats.Refused.Add(1)
		if s.warn.refused.Allow(time.Now()) {
			s.log.Warn("peer refused", "remote", conn.RemoteAddr().String(), "identity", printable(p.id), "err", err, "refused_total", n)
		}
		conn.Close()
		return false
	}
	s.peers[p] = struct{}{}
	s.mu.Unlock()
	s.opts.Stats.Peers.Add(1)
	if s.opts.OnPeer != nil {
		s.opts.OnPeer(p.id, true)
	}
	s.log.Debug("peer connected", "remote", conn.RemoteAddr().String(), "identity", printable(p.id))

	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		if err := p.writeLoop(); err != nil {
			p.shutdown()
		}
	}()
	mr := newMsgReader(conn, s.opts.MaxMessageSize, p.done)
	mr.parser.maxFrames = s.opts.MaxFrames
	if s.opts.Heartbeat > 0 {
		hbDone := make(chan struct{})
		defer func() { <-hbDone }()
		mr.alive = new(atomic.Int64)
		mr.alive.Store(time.Now().UnixNano())
		go func() {
			defer close(hbDone)
			s.heartbeat(p, conn, mr.alive)
		}()
	}
	err = mr.run(p.id, func(b *Batch) {
		s.opts.Stats.Received.Add(uint64(len(b.Msgs)))
		s.role.recv(p, b)
	}, func(name string, data []byte) error {
		if name == zmq4.CmdPing {
			// RFC 37: PONG echoes the PING's context (after the 2-byte
			// TTL), which is at most 16 bytes.
			if len(data) >= 2 {
				data = data[2:]
			}
			if len(data) > maxPingContext {
				return fmt.Errorf("%w: PING context of %d bytes, at most %d allowed", ErrProtocol, len(data), maxPingContext)
			}
			if !p.sendPong(data) {
				s.opts.Stats.DroppedPong.Add(1)
			}
		} else if h, ok := s.role.(commandHandler); ok {
			h.command(p, name, data)
		}
		return nil
	})
	if errors.Is(err, ErrOversize) {
		n := s.opts.Stats.DroppedOversize.Add(1)
		if s.warn.oversize.Allow(time.Now()) {
			s.log.Warn("peer closed: message too large", "remote", conn.RemoteAddr().String(), "identity", printable(p.id), "err", err, "dropped_total", n)
		}
	} else if errors.Is(err, ErrTooManyFrames) {
		n := s.opts.Stats.DroppedFrames.Add(1)
		if s.warn.frames.Allow(time.Now()) {
			s.log.Warn("peer closed: too many frames in a message", "remote", conn.RemoteAddr().String(), "identity", printable(p.id), "err", err, "dropped_total", n)
		}
	} else if errors.Is(err, ErrProtocol) {
		n := s.opts.Stats.ProtocolErrors.Add(1)
		if s.warn.protocol.Allow(time.Now()) {
			s.log.Warn("peer closed: protocol error", "remote", conn.RemoteAddr().String(), "identity", printable(p.id), "err", err, "protocol_errors_total", n)
		}
	} else if s.opts.Security != nil {
		s.noteReadError(err, p)
	}
	s.mu.Lock()
	s.role.detach(p)
	delete(s.peers, p)
	s.mu.Unlock()
	p.shutdown()
	<-writerDone
	s.opts.Stats.Peers.Add(-1)
	if s.opts.OnPeer != nil {
		s.opts.OnPeer(p.id, false)
	}
	s.log.Debug("peer disconnected", "remote", conn.RemoteAddr().String(), "identity", printable(p.id))
	return true
}

// heartbeat watches a connection that has sent something since it last
// heard from its peer (alive and p.wrote are the times of the last read
// and write, in unix nanoseconds): it pings the peer every
// Options.Heartbeat, and closes the connection when nothing at all has
// come back for HeartbeatTimeout. An idle connection is left alone: no
// PING, no timeout, so that thousands of idle services cost a proxy
// nothing. It returns when the peer is shut down.
func (s *socket) heartbeat(p *peer, conn net.Conn, alive *atomic.Int64) {
	t := time.NewTicker(s.opts.Heartbeat)
	defer t.Stop()
	var waiting int64 // since when we wait to hear from the peer; 0: not waiting
	for {
		select {
		case <-p.done:
			return
		case now := <-t.C:
			read, wrote, ns := alive.Load(), p.wrote.Load(), now.UnixNano()
			if waiting != 0 && read >= waiting {
				waiting = 0 // heard from it since
			}
			if waiting == 0 {
				if wrote > read {
					waiting = ns
					p.sendPing()
				}
				continue
			}
			if silent := time.Duration(ns - waiting); silent > s.opts.HeartbeatTimeout {
				n := s.opts.Stats.HeartbeatTimeouts.Add(1)
				s.log.Debug("peer silent past the heartbeat timeout: connection closed", "remote", conn.RemoteAddr().String(),
					"identity", printable(p.id), "silent", silent, "heartbeat_timeouts_total", n)
				p.shutdown()
				conn.Close()
				return
			}
			p.sendPing()
		}
	}
}

// maxBatchesInFlight bounds the batches of one connection that are handed
// on and not yet released. A reader that reaches it stops reading until a
// batch is released, so a peer that sends faster than the proxy forwards
// is held back by TCP (as libzmq's receive high-water mark does) instead
// of growing the mailboxes: a connection holds at most this many read
// buffers.
const maxBatchesInFlight = 16

// msgReader reads ZMTP frames from one connection into large buffers and
// hands them on in batches: one Read brings in as many messages as are on
// the wire, and they leave as one Batch, without a copy.
type msgReader struct {
	conn   net.Conn
	parser frameParser
	buf    *[]byte
	r, w   int
	ends   []int         // frame index where each message of the batch ends
	slots  chan struct{} // one token per batch in flight
	done   <-chan struct{}
	alive  *atomic.Int64 // with heartbeats: when the last read brought bytes
	copied int           // bytes moved between buffers, in all: the tests' measure of work
}

// newMsgReader reads conn; it stops waiting for a free in-flight slot when
// done is closed.
func newMsgReader(conn net.Conn, maxMsg int64, done <-chan struct{}) *msgReader {
	return &msgReader{conn: conn, parser: frameParser{maxMsg: maxMsg, maxFrames: defaultMaxFrames},
		buf: readBufPool.Get().(*[]byte), slots: make(chan struct{}, maxBatchesInFlight), done: done}
}

// renew moves the unparsed rest of the buffer into a new buffer of at least
// size bytes. The old buffer is released only if release is set (otherwise
// a batch owns it).
func (mr *msgReader) renew(size int, release bool) {
	nb := getReadBuf(size)
	mr.w = copy(*nb, (*mr.buf)[mr.r:mr.w])
	mr.copied += mr.w
	mr.r = 0
	if release {
		putReadBuf(mr.buf)
	}
	mr.buf = nb
}

// grow is the size of the next buffer when have bytes of an incomplete
// message (which needs need bytes in all, as far as its headers tell)
// are in hand: a pooled buffer while that is enough, else what the
// message needs, but at most twice and at least one and a half times
// what has arrived. A peer that declares a large frame and sends little
// of it costs little; one that sends it all costs at most twice what it
// sent; and a message of many small frames, whose next header is always
// a few bytes away, grows the buffer geometrically, not by those few
// bytes (each growth copies what arrived: that was quadratic).
func (mr *msgReader) grow(need, have int) int {
	if have < readBufSize {
		return readBufSize
	}
	if n := max(min(need, 2*have), have+have/2); n > 2*readBufSize {
		return n
	}
	return 2 * readBufSize // pooled, and at most 2*have

}

// run reads until the connection fails and returns why. For each burst it
// calls onBatch with the messages (the callee takes the batch's one hold)
// and onCommand for each command frame, in wire order.
func (mr *msgReader) run(peer []byte, onBatch func(*Batch), onCommand func(name string, data []byte) error) error {
	defer func() { putReadBuf(mr.buf); mr.buf = nil }()
	batch := newBatch(peer)
	defer func() { batch.Release() }()
	for {
		need := 0
		for {
			res, frames, n, nd, err := mr.parser.parse((*mr.buf)[mr.r:mr.w], batch.frames)
			if err != nil {
				return err
			}
			if res == parseIncomplete {
				need = nd
				break
			}
			mr.r += n
			if res == parseCommand {
				name, data, err := parseCommandBody(frames[len(frames)-1])
				if err == nil {
					err = onCommand(name, data)
				}
				if err != nil {
					return err
				}
				continue
			}
			batch.frames = frames
			mr.ends = append(mr.ends, len(frames))
		}
		if len(mr.ends) > 0 {
			i := 0
			for _, j := range mr.ends {
				batch.Msgs = append(batch.Msgs, batch.frames[i:j:j])
				i = j
			}
			mr.ends = mr.ends[:0]
			// The buffer goes with the batch: move the partial rest out
			// first, since the batch may be released (and its buffer reused)
			// as soon as it is handed on.
			batch.buf = mr.buf
			mr.renew(mr.grow(need, mr.w-mr.r), false)
			select {
			case mr.slots <- struct{}{}:
			case <-mr.done:
				return net.ErrClosed
			}
			batch.slot = mr.slots
			onBatch(batch)
			batch = newBatch(peer)
		} else {
			if mr.r > 0 {
				mr.w = copy(*mr.buf, (*mr.buf)[mr.r:mr.w])
				mr.copied += mr.w
				mr.r = 0
			}
			if mr.w == len(*mr.buf) {
				// Full, and the message needs more: grow, at most doubling
				// what has arrived, never to what the peer declared.
				mr.renew(mr.grow(need, mr.w), true)
			}
		}
		n, err := mr.conn.Read((*mr.buf)[mr.w:])
		mr.w += n
		if n > 0 && mr.alive != nil {
			mr.alive.Store(time.Now().UnixNano())
		}
		if err != nil {
			return err
		}
	}
}

// ---- Frames in: the reader's parser (ZMTP 3, RFC 23) ----

// parseResult says what parseMsg found at the start of a buffer.
type parseResult int

const (
	parseIncomplete parseResult = iota // need more bytes
	parseMessage                       // a complete message
	parseCommand                       // a complete command frame
)

// parseMsg parses one whole message (or command) at the start of b, as
// a frameParser without a frame limit would: for tests and fuzzers.
func parseMsg(b []byte, frames [][]byte, maxMsg int64) (res parseResult, out [][]byte, consumed int, need int, err error) {
	fp := frameParser{maxMsg: maxMsg, maxFrames: math.MaxInt}
	return fp.parse(b, frames)
}

// frameParser parses the messages of one connection, one at a time, and
// keeps its place in a message that has not all arrived: a reader that
// calls it again after each read resumes after the last complete frame,
// so a message costs CPU linear in its bytes however it is cut up on the
// wire (a message of 40,000 empty frames that arrived 2 bytes at a time
// was parsed 20,000 times from its start).
type frameParser struct {
	maxMsg    int64 // bytes of one message, all frames (ErrOversize)
	maxFrames int   // frames of one message (ErrTooManyFrames)

	// The incomplete message at the start of the buffer: the offset of
	// its first frame not yet complete, the body bytes and the frames
	// before it. All zero between messages.
	pos    int
	total  int64
	frames int

	headers int // frame headers read, in all: the tests' measure of work
}

// parse parses one message (or one command) at the start of b, which
// must begin where the previous call's message began if that one was
// incomplete (the caller may have moved the bytes, not changed them). It
// appends the frames, which alias b, to frames. It returns what it found,
// the bytes consumed, and, when incomplete, how many bytes the message
// needs at least (so the caller can grow its buffer). A frame or message
// larger than maxMsg is ErrOversize, detected from the headers alone; a
// message of more than maxFrames frames is ErrTooManyFrames.
func (fp *frameParser) parse(b []byte, frames [][]byte) (res parseResult, out [][]byte, consumed int, need int, err error) {
	start := len(frames)
	pos, total, n := fp.pos, fp.total, fp.frames
	// A resumed message's first frames were checked by an earlier call;
	// their slices are made once, when the message is complete.
	resumed := pos > 0
	incomplete := func(need int) (parseResult, [][]byte, int, int, error) {
		fp.pos, fp.total, fp.frames = pos, total, n
		return parseIncomplete, frames[:start], 0, need, nil
	}
	fail := func(err error) (parseResult, [][]byte, int, int, error) {
		fp.pos, fp.total, fp.frames = 0, 0, 0
		return 0, frames[:start], 0, 0, err
	}
	for {
		if len(b)-pos < 2 {
			return incomplete(pos + 2)
		}
		fp.headers++
		flags := b[pos]
		if flags&^(flagMore|flagLong|flagCommand) != 0 {
			return fail(fmt.Errorf("%w: reserved flag bits set (0x%02x)", ErrProtocol, flags))
		}
		hdr := 2
		size := uint64(b[pos+1])
		if flags&flagLong != 0 {
			hdr = 9
			if len(b)-pos < 9 {
				return incomplete(pos + 9)
			}
			size = binary.BigEndian.Uint64(b[pos+1 : pos+9])
		}
		if size > uint64(fp.maxMsg-total) {
			return fail(fmt.Errorf("%w: frame of %d bytes, limit %d", ErrOversize, size, fp.maxMsg))
		}
		if n >= fp.maxFrames {
			return fail(fmt.Errorf("%w: more than %d frames in one message", ErrTooManyFrames, fp.maxFrames))
		}
		if size > uint64(len(b)-pos-hdr) {
			// Incomplete. Computed without overflow: with a limit near
			// MaxInt64, pos+hdr+size may not fit in an int.
			need := math.MaxInt
			if size <= uint64(math.MaxInt-pos-hdr) {
				need = pos + hdr + int(size)
			}
			return incomplete(need)
		}
		total += int64(size)
		n++
		end := pos + hdr + int(size)
		body := b[pos+hdr : end : end]
		pos = end
		if flags&flagCommand != 0 {
			if flags&flagMore != 0 || n != 1 {
				return fail(fmt.Errorf("%w: command frame inside a multipart message", ErrProtocol))
			}
			fp.pos, fp.total, fp.frames = 0, 0, 0
			return parseCommand, append(frames, body), pos, 0, nil
		}
		if !resumed {
			frames = append(frames, body)
		}
		if flags&flagMore == 0 {
			if resumed {
				frames = appendBodies(frames, b[:pos])
			}
			fp.pos, fp.total, fp.frames = 0, 0, 0
			return parseMessage, frames, pos, 0, nil
		}
	}
}

// appendBodies appends the bodies of the frames that b holds, whole and
// already checked by frameParser.parse.
func appendBodies(frames [][]byte, b []byte) [][]byte {
	for pos := 0; pos < len(b); {
		hdr, size := 2, int(b[pos+1])
		if b[pos]&flagLong != 0 {
			hdr, size = 9, int(binary.BigEndian.Uint64(b[pos+1:pos+9]))
		}
		end := pos + hdr + size
		frames = append(frames, b[pos+hdr:end:end])
		pos = end
	}
	return frames
}

// parseCommandBody splits a command frame body into its name and data.
func parseCommandBody(body []byte) (name string, data []byte, err error) {
	if len(body) < 1 || int(body[0]) > len(body)-1 {
		return "", nil, fmt.Errorf("%w: truncated command", ErrProtocol)
	}
	n := int(body[0])
	return string(body[1 : 1+n]), body[1+n:], nil
}

// ---- Batches: what one read hands on ----

// readBufSize is the size of a read buffer: one read brings in as many
// messages as fit, and they travel on together as one Batch.
const readBufSize = 64 << 10

var readBufPool = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}

// bigReadBufPool holds buffers of twice readBufSize, for messages a
// little larger than one read buffer (a 64 KiB payload and its
// envelope): without it each such message takes a buffer of its own
// (BenchmarkReadLargeMessages: 8.4 MB allocated per 64 such messages,
// 9 KB with it), and a peer that sends them fast to a server that never
// reads grew the proxy's RSS by 261 MiB instead of 33
// (e2e TestAttackStuckPeerMemory). Larger messages still take a buffer
// each, which the GC collects.
var bigReadBufPool = sync.Pool{New: func() any { b := make([]byte, 2*readBufSize); return &b }}

// getReadBuf is a buffer of at least size bytes: pooled up to twice
// readBufSize, else a new one.
func getReadBuf(size int) *[]byte {
	switch {
	case size <= readBufSize:
		return readBufPool.Get().(*[]byte)
	case size <= 2*readBufSize:
		return bigReadBufPool.Get().(*[]byte)
	}
	b := make([]byte, size)
	return &b
}

// putReadBuf returns a buffer from getReadBuf to its pool, if it has one.
func putReadBuf(b *[]byte) {
	switch {
	case b == nil:
	case cap(*b) == readBufSize:
		readBufPool.Put(b)
	case cap(*b) == 2*readBufSize:
		bigReadBufPool.Put(b)
	}
}

// Batch is the messages one read burst brought in from one peer. Its frames
// alias a read buffer that returns to a pool when the last holder calls
// Release, so a receiver that keeps a frame past Release must copy it.
type Batch struct {
	// Peer is the identity of the peer the messages came from.
	Peer []byte
	Msgs []Msg

	// types is what Parse found in each message's envelope, its type (0:
	// not parsed, or not a valid envelope): filled on the reader that
	// read the batch, read by its other holders through Envelope.
	types []MsgType

	frames [][]byte
	buf    *[]byte
	refs   atomic.Int32
	slot   chan struct{} // the reader's in-flight slot this batch holds, if any
}

var batchPool = sync.Pool{New: func() any { return new(Batch) }}

func newBatch(peer []byte) *Batch {
	b := batchPool.Get().(*Batch)
	b.Peer = peer
	b.refs.Store(1)
	return b
}

// Retain adds a holder: each holder calls Release once.
func (b *Batch) Retain() { b.refs.Add(1) }

// Release drops a hold; the last one recycles the buffers.
func (b *Batch) Release() {
	if b.refs.Add(-1) != 0 {
		return
	}
	putReadBuf(b.buf)
	if b.slot != nil {
		<-b.slot
	}
	clear(b.frames)
	clear(b.Msgs)
	clear(b.types)
	b.types = b.types[:0]
	b.frames, b.Msgs, b.buf, b.Peer, b.slot = b.frames[:0], b.Msgs[:0], nil, nil, nil
	batchPool.Put(b)
}

// NewBatch builds a batch from messages that the caller owns, for tests and
// for sockets that produce messages themselves.
func NewBatch(peer []byte, msgs ...Msg) *Batch {
	b := newBatch(peer)
	b.Msgs = append(b.Msgs, msgs...)
	return b
}

// ---- The peer: its bounded queue and its writer ----

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
// high-water mark), so a slow peer never blocks anyone but itself. In
// bytes, the batch the writer is writing counts too: a peer that never
// reads holds its writer in a write of up to hwmBytes, and the queue
// behind it would have doubled that (a stuck peer took 64-83 MiB with
// hwmBytes of 16 MiB), so the queue and the batch together hold at most
// hwmBytes, but for one message when both are empty. In messages, as in
// libzmq, the batch being written (like libzmq's encoder buffer and the
// socket buffer) does not count: hwm queued, and one batch of at most hwm.
type peer struct {
	id   []byte
	conn net.Conn

	mu       sync.Mutex
	buf      []byte          // encoded messages not yet taken by the writer
	spare    []byte          // the writer's previous buffer, reused
	queued   int             // messages and commands in buf
	hwm      int             // bound on queued
	hwmBytes int             // bound on len(buf)+inflight, but for one message when both are 0
	inflight int             // bytes of the batch being written (writing is set)
	pong     bool            // a PONG is in buf
	ping     bool            // a PING is in buf (heartbeats)
	wrote    *atomic.Int64   // with heartbeats: when the last write went out (unix nanoseconds)
	writing  bool            // the writer, or a sender (writeNow), is writing to conn
	raw      syscall.RawConn // for writeNow's non-blocking write; nil = always the writer
	dead     bool
	wake     chan struct{} // cap 1: buf went from empty to non-empty
	done     chan struct{} // closed when the peer is shut down
	doneOnce sync.Once

	filter filterRef // PUB only: what this subscriber asked for
	seen   uint64    // PUB only: the last publish that reached it (Pub.pubMu)
}

func newPeer(s *socket, id []byte, conn net.Conn) *peer {
	p := &peer{
		id:       id,
		conn:     conn,
		hwm:      s.opts.HWM,
		hwmBytes: s.opts.HWMBytes,
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	// Only a plain TCP connection (or PLAIN's session, which keeps
	// SyscallConn) is written directly: a secure one (CURVE's box
	// wrapper) must go through its Write, which encrypts.
	if sc, ok := conn.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			p.raw = raw
		}
	}
	return p
}

// send queues the message head+tail and wakes the writer. It returns
// false, without queueing, when the peer is at its high-water mark (in
// messages or in bytes) or gone.
func (p *peer) send(head, tail [][]byte) bool { return p.sendMsg(head, tail, false) }

// sendNow is send for the last message of a burst: if the queue was empty
// and the writer idle, the caller writes it at once (writeNow) instead of
// waking the writer. The messages before it in the burst went through
// send, so under load they have woken the writer and this one joins its
// queue: batching is kept, and a lone message takes one hand-off less.
func (p *peer) sendNow(head, tail [][]byte) bool { return p.sendMsg(head, tail, true) }

func (p *peer) sendMsg(head, tail [][]byte, now bool) bool {
	n := encodedLen(head, tail)
	p.mu.Lock()
	if held := len(p.buf) + p.inflight; p.dead || p.queued >= p.hwm || held > 0 && held+n > p.hwmBytes {
		p.mu.Unlock()
		return false
	}
	wasEmpty := len(p.buf) == 0
	if need := len(p.buf) + n; need > cap(p.buf) {
		// Grow by doubling, but never past what the queue may hold:
		// append's own growth (1.25x for large slices) leaves four times
		// the queue's size behind as garbage on the way to the mark, and
		// overshoots it; a peer that never reads fills its queue once.
		nb := make([]byte, len(p.buf), max(need, min(2*cap(p.buf), p.hwmBytes-p.inflight)))
		copy(nb, p.buf)
		p.buf = nb
	}
	p.buf = appendMsg(p.buf, head, tail)
	p.queued++
	if now && wasEmpty && !p.writing && p.raw != nil {
		// The writer is idle and the queue was empty: write it now, from
		// here, instead of waking the writer.
		p.writeNow()
		return true
	}
	p.mu.Unlock()
	if wasEmpty {
		p.signal()
	}
	return true
}

// writeNow writes the queue with one non-blocking write, on the caller's
// goroutine; what the kernel does not take goes back to the front of the
// queue for the writer. It is called with p.mu held, and releases it. The
// writing flag keeps the writer off the connection meanwhile, so the
// connection still has one writer at a time.
func (p *peer) writeNow() {
	out := p.buf
	p.buf, p.spare = p.spare[:0], nil
	p.queued, p.pong, p.ping = 0, false, false
	p.writing, p.inflight = true, len(out)
	p.mu.Unlock()

	n, err := p.tryWrite(out)
	if n > 0 && p.wrote != nil {
		p.wrote.Store(time.Now().UnixNano())
	}

	p.mu.Lock()
	p.writing, p.inflight = false, 0
	rest := out[n:]
	switch {
	case err != nil:
		p.mu.Unlock()
		p.shutdown() // as the writer does on a write error
		return
	case p.dead:
		// Shut down meanwhile: its queue is gone, put nothing back.
	case len(rest) > 0:
		// Kernel buffer full: the rest goes first, then what others
		// queued meanwhile (a PONG, a subscription), for the writer.
		p.buf = append(append(make([]byte, 0, len(rest)+len(p.buf)), rest...), p.buf...)
		p.queued++
	default:
		if cap(out) <= keepWriteBuf {
			p.spare = out[:0]
		}
	}
	pending := len(p.buf) > 0
	p.mu.Unlock()
	if pending {
		p.signal()
	}
}

// tryWrite makes one non-blocking write(2) of b: it returns what the
// kernel took, 0 if it would block.
func (p *peer) tryWrite(b []byte) (int, error) {
	var n int
	var werr error
	if err := p.raw.Write(func(fd uintptr) bool {
		n, werr = syscall.Write(int(fd), b)
		return true // one attempt: never wait for the socket
	}); err != nil {
		return 0, err
	}
	if werr == syscall.EAGAIN || werr == syscall.EINTR {
		return 0, nil
	}
	return max(n, 0), werr
}

// pingBody is a PING's data: a TTL of 0 (the peer need not time us out)
// and no context.
var pingBody = []byte{0, 0}

// sendPing queues a PING (heartbeats), unless one is queued already. It
// does not count toward the bounds: at most one waits.
func (p *peer) sendPing() {
	p.mu.Lock()
	if p.dead || p.ping {
		p.mu.Unlock()
		return
	}
	wasEmpty := len(p.buf) == 0
	p.buf = appendCommand(p.buf, "PING", pingBody)
	p.ping = true
	p.mu.Unlock()
	if wasEmpty {
		p.signal()
	}
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
		// Yield once before taking the queue: senders running at this
		// moment (a burst's other messages, other callers of an rpc
		// client) can join this write instead of waking the writer
		// again. Measured once, not tested: the proxy's CPU per call
		// under the Go bench client fell from 27.5 to 20 µs with it.
		runtime.Gosched()
		p.mu.Lock()
		if p.writing || len(p.buf) == 0 {
			// A sender is writing directly; it wakes us if it leaves
			// anything behind.
			p.mu.Unlock()
			continue
		}
		out := p.buf
		p.buf, p.spare = p.spare[:0], nil
		p.queued, p.pong, p.ping = 0, false, false
		p.writing, p.inflight = true, len(out)
		p.mu.Unlock()
		_, err := p.conn.Write(out)
		if p.wrote != nil {
			p.wrote.Store(time.Now().UnixNano())
		}
		if cap(out) > keepWriteBuf {
			out = nil
		}
		p.mu.Lock()
		p.writing, p.inflight = false, 0
		p.spare = out[:0]
		p.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// unwritten reports whether the peer still has queued data to write.
func (p *peer) unwritten() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.dead && (len(p.buf) > 0 || p.writing)
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

// ---- Frames out: encoding into a peer's queue ----

// ZMTP 3 frame flags (RFC 23).
const (
	flagMore    = 0x01
	flagLong    = 0x02
	flagCommand = 0x04
)

// Msg is one ZeroMQ message: its frames, in order.
type Msg [][]byte

// Size is the sum of the frame lengths.
func (m Msg) Size() int {
	n := 0
	for _, f := range m {
		n += len(f)
	}
	return n
}

// frameHeaderLen is the length of a ZMTP frame header for a body of n bytes.
func frameHeaderLen(n int) int {
	if n > 255 {
		return 9
	}
	return 2
}

// encodedLen is the number of bytes head followed by tail takes on the wire.
func encodedLen(head, tail [][]byte) int {
	n := 0
	for _, f := range head {
		n += frameHeaderLen(len(f)) + len(f)
	}
	for _, f := range tail {
		n += frameHeaderLen(len(f)) + len(f)
	}
	return n
}

// appendFrame appends one frame, header and body, to dst.
func appendFrame(dst []byte, flags byte, body []byte) []byte {
	return security.AppendFrame(dst, flags, body)
}

// appendMsg appends the message made of head's frames then tail's frames.
// Splitting a message in two lets callers build the envelope head on the
// stack and pass the payload frames through without copying the slice.
func appendMsg(dst []byte, head, tail [][]byte) []byte {
	total := len(head) + len(tail)
	i := 0
	for _, f := range head {
		i++
		dst = appendFrame(dst, moreFlag(i < total), f)
	}
	for _, f := range tail {
		i++
		dst = appendFrame(dst, moreFlag(i < total), f)
	}
	return dst
}

func moreFlag(more bool) byte {
	if more {
		return flagMore
	}
	return 0
}

// appendCommand appends a ZMTP command frame (RFC 23: name length, name, data).
func appendCommand(dst []byte, name string, data []byte) []byte {
	n := 1 + len(name) + len(data)
	if n > 255 {
		dst = append(dst, flagCommand|flagLong)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	} else {
		dst = append(dst, flagCommand, byte(n))
	}
	dst = append(dst, byte(len(name)))
	dst = append(dst, name...)
	return append(dst, data...)
}
