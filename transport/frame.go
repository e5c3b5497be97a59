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

// parseMsg parses one message (or one command) at the start of b. It
// appends the frames, which alias b, to frames. It returns what it found,
// the bytes consumed, and, when incomplete, how many bytes the message needs
// at least (so the caller can grow its buffer). A frame or message larger
// than maxMsg is ErrOversize, detected from the headers alone.
func parseMsg(b []byte, frames [][]byte, maxMsg int64) (res parseResult, out [][]byte, consumed int, need int, err error) {
	pos := 0
	var total int64
	start := len(frames)
	for {
		if len(b)-pos < 2 {
			return parseIncomplete, frames[:start], 0, pos + 2, nil
		}
		flags := b[pos]
		if flags&^(flagMore|flagLong|flagCommand) != 0 {
			return 0, frames[:start], 0, 0, fmt.Errorf("%w: reserved flag bits set (0x%02x)", ErrProtocol, flags)
		}
		hdr := 2
		size := uint64(b[pos+1])
		if flags&flagLong != 0 {
			hdr = 9
			if len(b)-pos < 9 {
				return parseIncomplete, frames[:start], 0, pos + 9, nil
			}
			size = binary.BigEndian.Uint64(b[pos+1 : pos+9])
		}
		if size > uint64(maxMsg-total) {
			return 0, frames[:start], 0, 0, fmt.Errorf("%w: frame of %d bytes, limit %d", ErrOversize, size, maxMsg)
		}
		total += int64(size)
		if size > uint64(len(b)-pos-hdr) {
			// Incomplete. Computed without overflow: with a limit near
			// MaxInt64, pos+hdr+size may not fit in an int.
			need := math.MaxInt
			if size <= uint64(math.MaxInt-pos-hdr) {
				need = pos + hdr + int(size)
			}
			return parseIncomplete, frames[:start], 0, need, nil
		}
		end := pos + hdr + int(size)
		body := b[pos+hdr : end : end]
		pos = end
		if flags&flagCommand != 0 {
			if flags&flagMore != 0 || len(frames) != start {
				return 0, frames[:start], 0, 0, fmt.Errorf("%w: command frame inside a multipart message", ErrProtocol)
			}
			return parseCommand, append(frames, body), pos, 0, nil
		}
		frames = append(frames, body)
		if flags&flagMore == 0 {
			return parseMessage, frames, pos, 0, nil
		}
	}
}

// parseCommandBody splits a command frame body into its name and data.
func parseCommandBody(body []byte) (name string, data []byte, err error) {
	if len(body) < 1 || int(body[0]) > len(body)-1 {
		return "", nil, fmt.Errorf("%w: truncated command", ErrProtocol)
	}
	n := int(body[0])
	return string(body[1 : 1+n]), body[1+n:], nil
}
