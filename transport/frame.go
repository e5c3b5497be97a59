package transport

import (
	"encoding/binary"
	"fmt"
	"math"
)

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
	if n := len(body); n > 255 {
		dst = append(dst, flags|flagLong)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	} else {
		dst = append(dst, flags, byte(n))
	}
	return append(dst, body...)
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
