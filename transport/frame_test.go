package transport

import (
	"bytes"
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"unsafe"
)

func TestFrameRoundTrip(t *testing.T) {
	tests := []struct {
		name      string
		head      []string
		tail      []string
		wantFirst []byte // the first bytes on the wire, if checked
	}{
		{name: "one empty frame", head: []string{""}, wantFirst: []byte{0x00, 0x00}},
		{name: "one short frame", head: []string{"abc"}, wantFirst: []byte{0x00, 3, 'a', 'b', 'c'}},
		{name: "255 bytes is short", head: []string{strings.Repeat("s", 255)}, wantFirst: []byte{0x00, 255, 's'}},
		{name: "256 bytes is long", head: []string{strings.Repeat("l", 256)}, wantFirst: []byte{0x02, 0, 0, 0, 0, 0, 0, 1, 0, 'l'}},
		{name: "70000 bytes", head: []string{strings.Repeat("x", 70000)}, wantFirst: []byte{0x02, 0, 0, 0, 0, 0, 1, 0x11, 0x70, 'x'}},
		{name: "multi-frame", head: []string{"", "1.0", "1"}, tail: []string{"p1", "p2"}, wantFirst: []byte{0x01, 0, 0x01, 3, '1', '.', '0'}},
		{name: "tail only", tail: []string{"a", "b"}, wantFirst: []byte{0x01, 1, 'a', 0x00, 1, 'b'}},
		{name: "short and long mixed", head: []string{"k", strings.Repeat("L", 300)}, tail: []string{"", strings.Repeat("M", 256), "z"}, wantFirst: []byte{0x01, 1, 'k', 0x03, 0, 0, 0, 0, 0, 0, 1, 0x2c}},
		{name: "last frame long", head: []string{"a"}, tail: []string{strings.Repeat("T", 1000)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			head, tail := frames(tt.head...), frames(tt.tail...)
			want := append(slices.Clone(tt.head), tt.tail...)
			prefix := []byte("previous bytes")
			wire := appendMsg(slices.Clone(prefix), head, tail)
			if !bytes.HasPrefix(wire, prefix) {
				t.Fatalf("appendMsg overwrote what was in dst")
			}
			wire = wire[len(prefix):]
			if got, wantLen := len(wire), encodedLen(head, tail); got != wantLen {
				t.Errorf("encoded length: got %d, want encodedLen %d", got, wantLen)
			}
			if tt.wantFirst != nil && !bytes.HasPrefix(wire, tt.wantFirst) {
				t.Errorf("wire starts with %x, want %x", wire[:min(len(wire), len(tt.wantFirst))], tt.wantFirst)
			}
			if got := encodeByHand(want); !bytes.Equal(wire, got) {
				t.Errorf("wire differs from the RFC 23 encoding")
			}
			// Two messages back to back, then parse both.
			stream := append(slices.Clone(wire), wire...)
			for i := range 2 {
				res, got, n, _, err := parseMsg(stream, nil, 1<<20)
				if err != nil || res != parseMessage {
					t.Fatalf("message %d: got (%v, %v), want a message", i, res, err)
				}
				if n != len(wire) {
					t.Fatalf("message %d: consumed %d, want %d", i, n, len(wire))
				}
				if !slices.Equal(strs(got), want) {
					t.Fatalf("message %d: got %q, want %q", i, strs(got), want)
				}
				if Msg(got).Size() != len(strings.Join(want, "")) {
					t.Fatalf("Size: got %d, want %d", Msg(got).Size(), len(strings.Join(want, "")))
				}
				stream = stream[n:]
			}
			if len(stream) != 0 {
				t.Fatalf("%d bytes left after two messages, want 0", len(stream))
			}
		})
	}
}

func TestCommandRoundTrip(t *testing.T) {
	tests := []struct {
		name      string
		cmd       string
		data      string
		wantFlags byte
	}{
		{name: "ping", cmd: "PING", data: "\x00\x0aabc", wantFlags: 0x04},
		{name: "pong without context", cmd: "PONG", data: "", wantFlags: 0x04},
		{name: "subscribe", cmd: "SUBSCRIBE", data: "topic", wantFlags: 0x04},
		{name: "long command", cmd: "READY", data: strings.Repeat("m", 300), wantFlags: 0x06},
		{name: "254 bytes of body stays short", cmd: "X", data: strings.Repeat("d", 253), wantFlags: 0x04},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wire := appendCommand(nil, tt.cmd, []byte(tt.data))
			if wire[0] != tt.wantFlags {
				t.Fatalf("flags: got 0x%02x, want 0x%02x", wire[0], tt.wantFlags)
			}
			res, got, n, _, err := parseMsg(wire, nil, 1<<20)
			if err != nil || res != parseCommand || n != len(wire) || len(got) != 1 {
				t.Fatalf("parse: got (%v, %d frames, %d of %d bytes, %v), want one command", res, len(got), n, len(wire), err)
			}
			name, data, err := parseCommandBody(got[0])
			if err != nil {
				t.Fatalf("parseCommandBody: %v", err)
			}
			if name != tt.cmd || string(data) != tt.data {
				t.Fatalf("command: got (%q, %q), want (%q, %q)", name, data, tt.cmd, tt.data)
			}
		})
	}
}

func TestParseCommandBody(t *testing.T) {
	tests := []struct {
		name     string
		body     string
		wantName string
		wantData string
		wantErr  error
	}{
		{name: "name and data", body: "\x04PINGxy", wantName: "PING", wantData: "xy"},
		{name: "name only", body: "\x05READY", wantName: "READY"},
		{name: "empty name", body: "\x00rest", wantName: "", wantData: "rest"},
		{name: "empty body", body: "", wantErr: ErrProtocol},
		{name: "name longer than body", body: "\x09PING", wantErr: ErrProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name, data, err := parseCommandBody([]byte(tt.body))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err: got %v, want %v", err, tt.wantErr)
			}
			if name != tt.wantName || string(data) != tt.wantData {
				t.Fatalf("got (%q, %q), want (%q, %q)", name, data, tt.wantName, tt.wantData)
			}
		})
	}
}

func TestParseMsg(t *testing.T) {
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	tests := []struct {
		name         string
		in           []byte
		max          int64
		wantRes      parseResult
		wantErr      error
		wantFrames   []string
		wantConsumed int
		wantNeed     int
	}{
		{name: "empty input", in: nil, max: 100, wantRes: parseIncomplete, wantNeed: 2},
		{name: "flags only", in: []byte{0x00}, max: 100, wantRes: parseIncomplete, wantNeed: 2},
		{name: "short header, no body", in: []byte{0x00, 5, 'a'}, max: 100, wantRes: parseIncomplete, wantNeed: 7},
		{name: "truncated long header", in: []byte{0x02, 0, 0, 0}, max: 1000, wantRes: parseIncomplete, wantNeed: 9},
		{name: "long header, no body", in: longHeader(0, 300), max: 1000, wantRes: parseIncomplete, wantNeed: 309},
		{name: "second frame missing", in: []byte{0x01, 1, 'a'}, max: 100, wantRes: parseIncomplete, wantNeed: 5},
		{name: "one frame", in: []byte{0x00, 1, 'a', 0xff}, max: 100, wantRes: parseMessage, wantFrames: []string{"a"}, wantConsumed: 3},
		{name: "long header for a short frame", in: cat(longHeader(0, 2), []byte("hi")), max: 100, wantRes: parseMessage, wantFrames: []string{"hi"}, wantConsumed: 11},
		{name: "exactly the limit", in: cat([]byte{0x01, 3}, []byte("abc"), []byte{0x00, 2}, []byte("de")), max: 5, wantRes: parseMessage, wantFrames: []string{"abc", "de"}, wantConsumed: 9},
		{name: "command", in: []byte{0x04, 5, 4, 'P', 'I', 'N', 'G'}, max: 100, wantRes: parseCommand, wantFrames: []string{"\x04PING"}, wantConsumed: 7},

		{name: "frame above the limit", in: []byte{0x00, 6}, max: 5, wantErr: ErrOversize},
		{name: "message above the limit over frames", in: cat([]byte{0x01, 3}, []byte("abc"), []byte{0x00, 3}), max: 5, wantErr: ErrOversize},
		{name: "oversize seen before the body arrives", in: []byte{0x01, 3, 'a'}, max: 2, wantErr: ErrOversize},
		{name: "long header claims 2^63", in: longHeader(0, 1<<63), max: 1 << 20, wantErr: ErrOversize},
		{name: "long header claims 2^64-1", in: longHeader(0, math.MaxUint64), max: 1 << 20, wantErr: ErrOversize},
		{name: "long header claims 2^62, limit MaxInt64", in: longHeader(0, 1<<62), max: math.MaxInt64, wantRes: parseIncomplete, wantNeed: 9 + 1<<62},
		{name: "long header claims MaxInt64, limit MaxInt64", in: longHeader(0, math.MaxInt64), max: math.MaxInt64, wantRes: parseIncomplete, wantNeed: math.MaxInt},
		{name: "second long header claims MaxInt64, limit MaxInt64", in: append([]byte{0x01, 1, 'a'}, longHeader(0, math.MaxInt64)...), max: math.MaxInt64, wantErr: ErrOversize},
		{name: "long command claims 2^40", in: longHeader(flagCommand, 1<<40), max: 1 << 20, wantErr: ErrOversize},
		{name: "reserved flag bit", in: []byte{0x08, 0}, max: 100, wantErr: ErrProtocol},
		{name: "reserved flag bit in a later frame", in: []byte{0x01, 0, 0x80, 0}, max: 100, wantErr: ErrProtocol},
		{name: "command with MORE", in: []byte{0x05, 1, 0}, max: 100, wantErr: ErrProtocol},
		{name: "command inside a message", in: []byte{0x01, 1, 'a', 0x04, 1, 0}, max: 100, wantErr: ErrProtocol},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prev := [][]byte{[]byte("kept")}
			res, out, n, need, err := parseMsg(tt.in, prev, tt.max)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err: got %v, want %v", err, tt.wantErr)
			}
			if len(out) < 1 || string(out[0]) != "kept" {
				t.Fatalf("frames already in the slice were lost: got %q", strs(out))
			}
			if err != nil {
				if n != 0 || len(out) != 1 {
					t.Fatalf("on error: got %d consumed and %d frames, want 0 and only the old one", n, len(out)-1)
				}
				return
			}
			if res != tt.wantRes {
				t.Fatalf("result: got %v, want %v", res, tt.wantRes)
			}
			if n != tt.wantConsumed {
				t.Errorf("consumed: got %d, want %d", n, tt.wantConsumed)
			}
			if res == parseIncomplete && need != tt.wantNeed {
				t.Errorf("need: got %d, want %d", need, tt.wantNeed)
			}
			if got := strs(out[1:]); !slices.Equal(got, tt.wantFrames) && len(got)+len(tt.wantFrames) > 0 {
				t.Errorf("frames: got %q, want %q", got, tt.wantFrames)
			}
		})
	}
}

// TestParseMsgNeed feeds every prefix of a message: each is incomplete,
// with a need larger than what is there and never more than the whole.
func TestParseMsgNeed(t *testing.T) {
	wire := appendMsg(nil, frames("", "1.0", strings.Repeat("k", 300)), frames("p", strings.Repeat("q", 70000)))
	for i := range len(wire) {
		res, out, n, need, err := parseMsg(wire[:i], nil, 1<<20)
		if err != nil || res != parseIncomplete || n != 0 || len(out) != 0 {
			t.Fatalf("prefix of %d bytes: got (%v, %d frames, %d consumed, %v), want incomplete", i, res, len(out), n, err)
		}
		if need <= i || need > len(wire) {
			t.Fatalf("prefix of %d bytes: need %d, want in (%d, %d]", i, need, i, len(wire))
		}
	}
}

// aliases reports whether f lies inside b.
func aliases(f, b []byte) bool {
	if len(f) == 0 {
		return true
	}
	base := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(f)))
	return p >= base && p+uintptr(len(f)) <= base+uintptr(len(b))
}

func FuzzParseMsg(f *testing.F) {
	msg := appendMsg(nil, frames("", "1.0", "1", "srv", "m1"), frames("payload"))
	long := appendMsg(nil, frames(strings.Repeat("L", 300)), nil)
	seeds := []struct {
		in  []byte
		max uint64
	}{
		{msg, 1 << 16},
		{long, 1 << 16},
		{append(slices.Clone(msg), long...), 1 << 16},
		{appendCommand(nil, "PING", []byte("\x00\x0aabc")), 1 << 16},
		{appendCommand(nil, "SUBSCRIBE", []byte("topic")), 1 << 16},
		{msg[:len(msg)-3], 1 << 16},     // truncated body
		{long[:5], 1 << 16},             // truncated long header
		{[]byte{0x00}, 1 << 16},         // flags only
		{nil, 1 << 16},                  // nothing
		{longHeader(0, 1<<63), 1 << 16}, // 2^63 bytes
		{longHeader(0, math.MaxUint64), 1 << 16},
		{longHeader(flagCommand, 1<<40), 1 << 16},
		{longHeader(flagMore, 1<<62), math.MaxUint32},
		{longHeader(0, math.MaxInt64), math.MaxInt64}, // a limit near MaxInt64
		{append([]byte{0x01, 1, 'a'}, longHeader(0, math.MaxInt64)...), math.MaxInt64},
		{[]byte{0x05, 1, 0}, 1 << 16},                               // command with MORE
		{[]byte{0x01, 1, 'a', 0x04, 1, 0}, 1 << 16},                 // command inside a message
		{[]byte{0x08, 0}, 1 << 16},                                  // reserved flag
		{[]byte{0x01, 3, 'a', 'b', 'c', 0x00, 3, 'd', 'e', 'f'}, 5}, // message above the limit
		{[]byte{0x00, 6, 'a', 'b', 'c', 'd', 'e', 'f'}, 5},          // frame above the limit
	}
	for _, s := range seeds {
		f.Add(s.in, s.max)
	}
	f.Fuzz(func(t *testing.T, in []byte, limit uint64) {
		if len(in) > 512 {
			// Headers claim any size anyway; minimizing big inputs,
			// quadratic in their size, stalls the fuzzer.
			t.Skip()
		}
		maxMsg := int64(limit & math.MaxInt64)
		prev := [][]byte{[]byte("kept")}
		res, out, n, need, err := parseMsg(in, prev, maxMsg)
		if n < 0 || n > len(in) {
			t.Fatalf("consumed %d of %d bytes", n, len(in))
		}
		if len(out) < 1 || string(out[0]) != "kept" {
			t.Fatalf("the frames already in the slice were lost")
		}

		// Oracle: a first frame header that claims more than the limit.
		if len(in) >= 2 && in[0]&^0x07 == 0 {
			size, ok := uint64(in[1]), true
			if in[0]&flagLong != 0 {
				ok = len(in) >= 9
				if ok {
					size = 0
					for _, c := range in[1:9] {
						size = size<<8 | uint64(c)
					}
				}
			}
			if ok && size > uint64(maxMsg) && !errors.Is(err, ErrOversize) {
				t.Fatalf("first frame claims %d bytes, limit %d: err got %v, want ErrOversize", size, maxMsg, err)
			}
		}

		if err != nil {
			if !errors.Is(err, ErrOversize) && !errors.Is(err, ErrProtocol) {
				t.Fatalf("err: got %v, want ErrOversize or ErrProtocol", err)
			}
			if n != 0 || len(out) != 1 {
				t.Fatalf("on error: %d consumed and %d new frames, want 0 and 0", n, len(out)-1)
			}
			return
		}
		got := out[1:]
		switch res {
		case parseIncomplete:
			if n != 0 || len(got) != 0 {
				t.Fatalf("incomplete: %d consumed and %d frames, want 0 and 0", n, len(got))
			}
			if need <= len(in) {
				t.Fatalf("incomplete: need %d with %d bytes there, want more", need, len(in))
			}
		case parseMessage, parseCommand:
			if n == 0 || len(got) == 0 {
				t.Fatalf("%v: %d consumed and %d frames, want some", res, n, len(got))
			}
			if res == parseCommand && len(got) != 1 {
				t.Fatalf("command: %d frames, want 1", len(got))
			}
			if size := Msg(got).Size(); int64(size) > maxMsg {
				t.Fatalf("a message of %d bytes passed the limit of %d", size, maxMsg)
			}
			for i, fr := range got {
				if !aliases(fr, in[:n]) {
					t.Fatalf("frame %d does not alias the consumed input", i)
				}
			}
			// Re-encode and parse again: the same frames.
			var wire []byte
			if res == parseCommand {
				wire = appendFrame(nil, flagCommand, got[0])
			} else {
				wire = appendMsg(nil, got, nil)
			}
			res2, again, n2, _, err := parseMsg(wire, nil, maxMsg)
			if err != nil || res2 != res || n2 != len(wire) {
				t.Fatalf("re-encoded: got (%v, %d of %d bytes, %v), want (%v, all)", res2, n2, len(wire), err, res)
			}
			if !slices.Equal(strs(again), strs(got)) {
				t.Fatalf("re-encoded: got %q, want %q", strs(again), strs(got))
			}
		default:
			t.Fatalf("result %d unknown", res)
		}
	})
}

// benchMsg is a typical v1.0 envelope as a proxy's ROUTER reads it.
func benchMsg() Msg {
	return Msg(frames("", "1.0", "1", "host/topic/server/6f1c2a44-5b0e-4d93-9a3e-d27b5c7d1a00", "8e5b0c3a-1f7d-4c8a-b2e9-0f6a3d9c4e21", strings.Repeat("p", 200)))
}

func BenchmarkParseMsg(b *testing.B) {
	wire := appendMsg(nil, benchMsg(), nil)
	fr := make([][]byte, 0, 16)
	b.ReportAllocs()
	b.SetBytes(int64(len(wire)))
	for b.Loop() {
		res, out, _, _, err := parseMsg(wire, fr[:0], defaultMaxMessageSize)
		if err != nil || res != parseMessage || len(out) != 6 {
			b.Fatalf("got (%v, %d frames, %v)", res, len(out), err)
		}
	}
}

func BenchmarkAppendMsg(b *testing.B) {
	m := benchMsg()
	head, tail := m[:5], m[5:]
	dst := make([]byte, 0, 4096)
	b.ReportAllocs()
	b.SetBytes(int64(encodedLen(head, tail)))
	for b.Loop() {
		dst = appendMsg(dst[:0], head, tail)
	}
}
