// Package oslo is oslo.messaging's payload encoding, fast: the JSON of
// requests ([context, {"method": NAME, "args": ARGS}]) and replies
// ([result, failure]) written by hand as Python's json.dumps writes it,
// and taken apart after one validation (Valid) by scans that allocate
// nothing. The rpc package frames and sends what this package encodes.
package oslo

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"unicode/utf8"
)

// Request's layout, as Python's json.dumps spaces it.
const (
	requestPre  = `[{}, {"method": `
	requestMid  = `, "args": `
	requestPost = `}]`
)

// AppendRequest appends [{}, {"method": METHOD, "args": ARGS}] to dst:
// args must be a JSON object, already encoded. With room for extra more
// bytes in the capacity of what it returns (one allocation when dst has
// too little).
func AppendRequest(dst []byte, method string, args []byte, extra int) ([]byte, error) {
	n := len(requestPre) + len(method) + 2 + len(requestMid) + len(args) + len(requestPost)
	var m []byte
	if !PlainASCII(method) {
		var err error
		if m, err = PyJSON(method); err != nil {
			return nil, err
		}
		n += len(m)
	}
	if cap(dst)-len(dst) < n+extra {
		dst = append(make([]byte, 0, len(dst)+n+extra), dst...)
	}
	dst = append(dst, requestPre...)
	if m == nil {
		dst = append(append(append(dst, '"'), method...), '"')
	} else {
		dst = append(dst, m...)
	}
	dst = append(dst, requestMid...)
	dst = append(dst, args...)
	return append(dst, requestPost...), nil
}

// The ways a request payload is malformed.
var (
	ErrNotRequest   = errors.New("request payload is not [context, message]")
	ErrMethodType   = errors.New("request method is not a string")
	ErrNoMethod     = errors.New("request without a method")
	errNotTwoParts  = errors.New("payload is not an array of two")
	emptyArgsObject = []byte("{}")
)

// DecodeRequest reads [context, {"method", "args"}], as Python's json
// reads it: keys matched exactly, a repeated key's last value counts,
// args null or missing is {}. The method's name is taken from names when
// its bytes are there (names maps a name to itself; only names that are
// valid UTF-8 without a backslash may be in it, whose JSON bytes are
// their value), else decoded. ctx and args are subslices of payload.
func DecodeRequest(payload []byte, names map[string]string) (ctx []byte, method string, args []byte, err error) {
	var parts [2][]byte
	r := shape{elems: parts[:]}
	if !scanJSON(payload, &r) || !r.array || r.n != 2 || parts[1][0] != '{' {
		return nil, "", nil, ErrNotRequest
	}
	methodOK := true
	field := func(key string, value []byte) {
		switch key {
		case "method":
			methodOK = value[0] == '"' || string(value) == "null"
			method = ""
			if value[0] == '"' {
				if name, ok := names[string(value[1:len(value)-1])]; ok {
					method = name
				} else {
					method = String(value)
				}
			}
		case "args":
			args = value
		}
	}
	if r.nm > maxMembers {
		ObjectFields(parts[1], field)
	} else { // the members as the one pass found them
		for _, m := range r.members[:r.nm] {
			field(keyString(payload[m.key:stringEnd(payload, m.key)]), payload[m.val:m.end])
		}
	}
	if !methodOK {
		return nil, "", nil, ErrMethodType
	}
	if method == "" {
		return nil, "", nil, ErrNoMethod
	}
	if len(args) == 0 || string(args) == "null" {
		args = emptyArgsObject
	}
	return parts[0], method, args, nil
}

// SplitPair reads a JSON array of exactly two elements ([result,
// failure], [context, message]).
func SplitPair(payload []byte) (first, second []byte, err error) {
	var parts [2][]byte
	if SplitArray(payload, parts[:]) != 2 {
		return nil, nil, errNotTwoParts
	}
	return parts[0], parts[1], nil
}

// PyJSON encodes v as Python's json.dumps does by default: ", " and ": "
// between items, non-ASCII escaped as \uXXXX, and no HTML escaping, so
// that a Go service's frames are the bytes an oslo.messaging service
// sends for the same values (a map's keys come out sorted, where Python
// keeps insertion order).
func PyJSON(v any) ([]byte, error) {
	switch v := v.(type) {
	case nil:
		return []byte("null"), nil
	case string:
		if PlainASCII(v) {
			out := make([]byte, 0, len(v)+2)
			return append(append(append(out, '"'), v...), '"'), nil
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	compact := bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
	out := make([]byte, 0, len(compact)+len(compact)/8)
	inString, escaped := false, false
	for i := 0; i < len(compact); {
		c := compact[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRune(compact[i:])
			if r >= 0x10000 {
				hi, lo := 0xd800+((r-0x10000)>>10), 0xdc00+((r-0x10000)&0x3ff)
				out = AppendU(AppendU(out, hi), lo)
			} else {
				out = AppendU(out, r)
			}
			i += size
			continue
		}
		out = append(out, c)
		i++
		switch {
		case inString && escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case c == '"':
			inString = !inString
		case !inString && (c == ',' || c == ':'):
			out = append(out, ' ')
		}
	}
	return out, nil
}

// AppendU appends the escape \\uXXXX of r (below 0x10000).
func AppendU(out []byte, r rune) []byte {
	s := strconv.FormatInt(int64(r), 16)
	out = append(out, `\u`...)
	for range 4 - len(s) {
		out = append(out, '0')
	}
	return append(out, s...)
}

// PlainASCII reports whether s is printable ASCII without a quote or a
// backslash: JSON-encoded as itself between quotes, by Python and by Go.
func PlainASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
