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

// SplitArray returns the first len(out) elements of the JSON array b
// into out and the number of elements it has (up to len(out)+1: "more").
// It returns -1 when b is not valid JSON or not an array.
func SplitArray(b []byte, out [][]byte) int {
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
		var key string
		if inner := b[i+1 : end-1]; PlainString(inner) {
			key = unsafe.String(unsafe.SliceData(inner), len(inner))
		} else {
			key = String(b[i:end])
		}
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
