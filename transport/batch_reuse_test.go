package transport

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"testing"
)

// A batch may be released, and its buffer reused by another reader, the
// moment it is handed on. The reader must have moved the partial message
// that follows the batch out of that buffer before. This test releases each
// batch at once and scribbles over pooled buffers, with messages cut at
// random places by the writes; any message read from a reused buffer shows
// up as a bad sequence or a protocol error.
func TestReaderKeepsPartialMessageWhenBatchIsReleasedAtOnce(t *testing.T) {
	client, server := net.Pipe()
	const n = 20000
	payload := bytes.Repeat([]byte("p"), 1000)
	go func() {
		defer client.Close()
		var wire []byte
		for i := range n {
			seq := binary.BigEndian.AppendUint32(nil, uint32(i))
			wire = appendMsg(wire, [][]byte{{}, seq}, [][]byte{payload})
		}
		r := rand.New(rand.NewPCG(1, 2))
		for len(wire) > 0 {
			k := min(len(wire), 1+r.IntN(3*readBufSize/2))
			if _, err := client.Write(wire[:k]); err != nil {
				return
			}
			wire = wire[k:]
		}
	}()
	next := uint32(0)
	var bad error
	mr := newMsgReader(server, 1<<20, nil)
	err := mr.run(nil, func(b *Batch) {
		for _, m := range b.Msgs {
			if len(m) != 3 || len(m[1]) != 4 || !bytes.Equal(m[2], payload) {
				bad = errors.New("message damaged")
			} else if got := binary.BigEndian.Uint32(m[1]); got != next && bad == nil {
				bad = errors.New("message out of sequence")
			}
			next++
		}
		b.Release()
		for range 4 { // another reader takes the buffers and reads into them
			buf := readBufPool.Get().(*[]byte)
			for i := range *buf {
				(*buf)[i] = 0xff
			}
			readBufPool.Put(buf)
		}
	}, func(string, []byte) error { return nil })
	server.Close()
	if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("reader ended with %v, want EOF", err)
	}
	if bad != nil {
		t.Fatal(bad)
	}
	if next != n {
		t.Fatalf("got %d messages, want %d", next, n)
	}
}
