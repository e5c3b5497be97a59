package transport

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
)

// chunkConn is a connection whose reads return at most chunk bytes of
// data each, then io.EOF: a peer that writes data in writes of that size,
// read by a reader that is always faster than the peer.
type chunkConn struct {
	net.Conn // nil: only Read is used
	data     []byte
	chunk    int
	reads    int
}

func (c *chunkConn) Read(b []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	c.reads++
	n := copy(b[:min(len(b), c.chunk)], c.data)
	c.data = c.data[n:]
	return n, nil
}

// manyFrames is one message of n frames of size bytes each.
func manyFrames(n, size int) []byte {
	fr := make([][]byte, n)
	for i := range fr {
		fr[i] = bytes.Repeat([]byte{byte(i)}, size)
	}
	return appendMsg(nil, fr, nil)
}

// readAll runs a reader with the given limits over data cut into reads of
// chunk bytes; it returns the messages' frame counts, the reader (for its
// work counters) and how it ended.
func readAll(data []byte, chunk, maxFrames int, maxMsg int64) (got []int, mr *msgReader, err error) {
	conn := &chunkConn{data: data, chunk: chunk}
	mr = newMsgReader(conn, maxMsg, nil)
	mr.parser.maxFrames = maxFrames
	err = mr.run(nil, func(b *Batch) {
		for _, m := range b.Msgs {
			got = append(got, len(m))
		}
		b.Release()
	}, func(string, []byte) error { return nil })
	return got, mr, err
}

// A message's frames are parsed once however they arrive: cut into
// 2-byte reads, a message of 30,000 empty frames costs the parser one
// look at each header plus one per read, and the buffer's growth copies
// at most a few times the message (it grows geometrically). Before, the
// reader parsed the message from its start after every read and grew its
// buffer by the 2 bytes the next header needed: 30,000 reads of up to
// 30,000 headers, 8 s of CPU in the proxy.
func TestTrickledMessageParsedOnce(t *testing.T) {
	for _, tc := range []struct {
		name         string
		frames, size int
		chunk        int
	}{
		{"30000 empty frames, 2 bytes a read", 30000, 0, 2},
		{"40000 empty frames at once", 40000, 0, 1 << 20},
		{"1000 frames of 300 bytes, 7 bytes a read", 1000, 300, 7},
		{"one frame of 1 MiB, 1000 bytes a read", 1, 1 << 20, 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wire := manyFrames(tc.frames, tc.size)
			got, mr, err := readAll(wire, tc.chunk, tc.frames, 1<<30)
			if !errors.Is(err, io.EOF) {
				t.Fatalf("reader ended with %v, want io.EOF", err)
			}
			if len(got) != 1 || got[0] != tc.frames {
				t.Fatalf("messages' frames: got %v, want [%d]", got, tc.frames)
			}
			reads := (len(wire) + tc.chunk - 1) / tc.chunk
			// A message that arrives in pieces is scanned once as it comes
			// and its frames sliced once at the end; each read may stop at
			// one incomplete header, looked at again by the next read.
			if max := 2*tc.frames + 2*reads + 2; mr.parser.headers > max {
				t.Errorf("headers read: got %d for %d frames in %d reads, want at most %d",
					mr.parser.headers, tc.frames, reads, max)
			}
			if max := 4*len(wire) + readBufSize; mr.copied > max {
				t.Errorf("bytes copied while growing: got %d for a %d-byte message, want at most %d",
					mr.copied, len(wire), max)
			}
		})
	}
}

// Messages that arrive cut at every possible place are the same messages.
func TestMessagesCutAnywhere(t *testing.T) {
	var wire []byte
	var want []int
	for i, n := range []int{1, 3, 2, 700, 1, 5} {
		fr := make([][]byte, n)
		for j := range fr {
			fr[j] = bytes.Repeat([]byte{byte(j)}, (i*31+j*7)%400)
		}
		wire = appendMsg(wire, fr, nil)
		want = append(want, n)
	}
	for _, chunk := range []int{1, 2, 3, 9, 255, 4096, len(wire)} {
		got, _, err := readAll(wire, chunk, 1024, 1<<20)
		if !errors.Is(err, io.EOF) {
			t.Fatalf("chunk %d: reader ended with %v, want io.EOF", chunk, err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("chunk %d: messages' frames: got %v, want %v", chunk, got, want)
		}
	}
}

// A message of more frames than the limit ends the connection with
// ErrTooManyFrames, at the first frame past it, whether it arrives at
// once or in pieces; one of exactly the limit passes.
func TestFrameLimit(t *testing.T) {
	const limit = 1024
	for _, tc := range []struct {
		name    string
		frames  int
		chunk   int
		wantErr error
	}{
		{"at the limit", limit, 1 << 20, io.EOF},
		{"at the limit, 2 bytes a read", limit, 2, io.EOF},
		{"one past it", limit + 1, 1 << 20, ErrTooManyFrames},
		{"40000 frames", 40000, 1 << 20, ErrTooManyFrames},
		{"40000 frames, 2 bytes a read", 40000, 2, ErrTooManyFrames},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, mr, err := readAll(manyFrames(tc.frames, 0), tc.chunk, limit, 1<<20)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("reader ended with %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr == ErrTooManyFrames {
				if len(got) != 0 {
					t.Fatalf("messages handed on: got %v, want none", got)
				}
				if mr.parser.headers > 2*limit+2 {
					t.Fatalf("headers read: got %d, want at most %d (stop at the first past the limit)", mr.parser.headers, 2*limit+2)
				}
			}
		})
	}
}

// BenchmarkReadFrames reads one message of 1, 10k or 100k frames of 8
// bytes, arriving at once or 2 bytes per read; MB/s is of wire bytes.
// The cost per byte stays flat across sizes: parsing is linear.
func BenchmarkReadFrames(b *testing.B) {
	for _, n := range []int{1, 10_000, 100_000} {
		wire := manyFrames(n, 8)
		for _, mode := range []struct {
			name  string
			chunk int
		}{{"whole", len(wire)}, {"trickled", 2}} {
			b.Run(fmt.Sprintf("frames=%d/%s", n, mode.name), func(b *testing.B) {
				b.SetBytes(int64(len(wire)))
				b.ReportAllocs()
				for b.Loop() {
					got, _, err := readAll(wire, mode.chunk, n, 1<<30)
					if !errors.Is(err, io.EOF) || len(got) != 1 {
						b.Fatalf("got %v, %v", got, err)
					}
				}
			})
		}
	}
}

// BenchmarkReadLargeMessages reads 64 messages of a 64 KiB payload and a
// 100-byte envelope (one message a little larger than a read buffer),
// arriving at once; B/op shows what the reader allocates for them (the
// pool of 128 KiB buffers keeps them from taking a buffer each).
func BenchmarkReadLargeMessages(b *testing.B) {
	var wire []byte
	for range 64 {
		wire = appendMsg(wire, [][]byte{make([]byte, 100), make([]byte, 64<<10)}, nil)
	}
	b.SetBytes(int64(len(wire)))
	b.ReportAllocs()
	for b.Loop() {
		got, _, err := readAll(wire, 1<<20, 16, 1<<30)
		if !errors.Is(err, io.EOF) || len(got) != 64 {
			b.Fatalf("got %v, %v", got, err)
		}
	}
}
