package oslo

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
	"unsafe"
)

// The payloads' outer shapes ([context, message], [result, failure]) are
// taken apart here without encoding/json's reflection: the payload is
// checked once with Valid (what json.Valid accepts, faster), and then,
// knowing it is valid JSON, a scan that tracks only strings and nesting
// finds the elements. The elements are subslices of the payload.

// isSpace is JSON's whitespace.
func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// valueEnd is the index just past the JSON value that starts at b[i]; b
// must be valid JSON and i the first byte of a value.
func valueEnd(b []byte, i int) int {
	depth := 0
	for ; i < len(b); i++ {
		switch b[i] {
		case '"':
			i = stringEnd(b, i) - 1
			if depth == 0 {
				return i + 1
			}
		case '{', '[':
			depth++
		case '}', ']':
			if depth--; depth == 0 {
				return i + 1
			}
		default:
			if depth == 0 { // a number or a literal
				for i < len(b) && b[i] != ',' && b[i] != ']' && b[i] != '}' && !isSpace(b[i]) {
					i++
				}
				return i
			}
		}
	}
	return i
}

// stringEnd is the index just past the string whose opening quote is b[i].
func stringEnd(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return len(b)
}

// shape is what scanJSON records of a payload as it checks it: the
// elements of a top-level array (into elems, the first len(elems) of
// them; n counts them all) and the members of its second element when
// that is an object (the first maxMembers of them; nm counts them all).
// Indexes are into the scanned bytes.
type shape struct {
	elems   [][]byte
	n       int
	array   bool // the top-level value is an array
	start   int  // where the current element starts
	msg     bool // the current element is the second and an object
	nm      int
	members [maxMembers]member
}

// member is an object member: its key's opening quote, and where its
// value starts and ends.
type member struct{ key, val, end int }

// maxMembers is how many members of a message object are recorded; a
// message with more is taken apart by ObjectFields (oslo's have two).
const maxMembers = 8

// valueStarts: a value starts at b[i], in a container depth deep.
func (r *shape) valueStarts(b []byte, depth uint, i int) {
	switch depth {
	case 0:
		r.array = b[i] == '['
	case 1:
		if r.array {
			r.start = i
			r.n++
			r.msg = r.n == 2 && b[i] == '{'
		}
	case 2:
		if r.msg && r.nm >= 1 && r.nm <= maxMembers {
			r.members[r.nm-1].val = i
		}
	}
}

// keyStarts: a member's key starts at b[i], in an object depth deep.
func (r *shape) keyStarts(depth uint, i int) {
	if depth == 2 && r.msg {
		r.nm++
		if r.nm <= maxMembers {
			r.members[r.nm-1].key = i
		}
	}
}

// valueEnds: a value ended just before b[i], in a container depth deep.
func (r *shape) valueEnds(b []byte, depth uint, i int) {
	switch depth {
	case 1:
		if r.array && r.n <= len(r.elems) {
			r.elems[r.n-1] = b[r.start:i]
		}
	case 2:
		if r.msg && r.nm >= 1 && r.nm <= maxMembers {
			r.members[r.nm-1].end = i
		}
	}
}

// SplitArray returns the first len(out) elements of the JSON array b
// into out and the number of elements it has (up to len(out)+1: "more").
// It returns -1 when b is not valid JSON or not an array. One pass checks
// b and finds the elements.
func SplitArray(b []byte, out [][]byte) int {
	r := shape{elems: out}
	if !scanJSON(b, &r) || !r.array {
		return -1
	}
	return min(r.n, len(out)+1)
}

// splitArrayTwoPass is SplitArray as it was: Valid, then a scan for the
// elements (the fuzz tests compare the two).
func splitArrayTwoPass(b []byte, out [][]byte) int {
	if !Valid(b) {
		return -1
	}
	i := skipSpace(b, 0)
	if b[i] != '[' {
		return -1
	}
	n := 0
	for i = skipSpace(b, i+1); b[i] != ']'; n++ {
		end := valueEnd(b, i)
		if n == len(out) {
			return n + 1
		}
		out[n] = b[i:end]
		i = skipSpace(b, end)
		if b[i] == ',' {
			i = skipSpace(b, i+1)
		}
	}
	return n
}

// ObjectFields calls fn with each key and raw value of the JSON object b,
// which must be valid JSON and start with '{'. Keys are unescaped; a key
// without escapes is b's own bytes, valid only during the call (fn must
// not keep it).
func ObjectFields(b []byte, fn func(key string, value []byte)) {
	i := skipSpace(b, 1)
	for i < len(b) && b[i] != '}' {
		end := stringEnd(b, i)
		key := keyString(b[i:end])
		i = skipSpace(b, end) + 1 // the colon
		i = skipSpace(b, i)
		end = valueEnd(b, i)
		fn(key, b[i:end])
		i = skipSpace(b, end)
		if b[i] == ',' {
			i = skipSpace(b, i+1)
		}
	}
}

// keyString is the value of the valid JSON string token tok: tok's own
// bytes when it has no escapes (valid only while tok is), else decoded.
func keyString(tok []byte) string {
	if inner := tok[1 : len(tok)-1]; PlainString(inner) {
		return unsafe.String(unsafe.SliceData(inner), len(inner))
	}
	return String(tok)
}

// PlainString: the inside of a JSON string token that is its own value
// (valid UTF-8, no escape).
func PlainString(inner []byte) bool {
	return bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner)
}

// String is the value of the valid JSON string token s, as
// encoding/json decodes it.
func String(s []byte) string {
	if inner := s[1 : len(s)-1]; PlainString(inner) {
		return string(inner)
	}
	var out string
	_ = json.Unmarshal(s, &out)
	return out
}
