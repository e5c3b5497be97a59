package oslo

import "encoding/binary"

// Valid reports what encoding/json.Valid(b) reports, several times
// faster: every payload is checked once before it is taken apart, so this
// is on the hot path. It is one iterative scan over the bytes; what it
// accepts is exactly what encoding/json's scanner accepts:
//
//   - exactly one value, with only ' ', '\t', '\n' and '\r' around and
//     between tokens; empty input (or only whitespace) is invalid;
//   - strings may hold any byte but '"', '\\' and the control bytes below
//     0x20, invalid UTF-8 included (Valid does not decode strings); the
//     escapes are \" \\ \/ \b \f \n \r \t and \u with four hex digits of
//     either case, lone surrogates such as \ud800 included;
//   - numbers are -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?;
//   - arrays and objects nest at most maxValidDepth deep.
//
// Nesting is tracked in a fixed bitset rather than by recursion, so a
// hostile payload can neither overflow nor grow the stack, and nothing is
// allocated.
func Valid(b []byte) bool { return scanJSON(b, nil) }

// scanJSON is Valid, recording into rec (unless nil) where the elements
// of a top-level array start and end, and the members of its second
// element when that is an object: what a payload's decoding needs, found
// in the one pass that checks it.
func scanJSON(b []byte, rec *shape) bool {
	// Bit d of objects is set when nesting level d+1 is an object rather
	// than an array. depth is unsigned so that finding a bit is shifts and
	// masks.
	var objects [(maxValidDepth + 63) / 64]uint64
	var depth uint
	i := skipSpace(b, 0)
value: // b[i] should start a value; whitespace before it is skipped.
	for {
		if i >= len(b) {
			return false
		}
		if rec != nil {
			rec.valueStarts(b, depth, i)
		}
		switch b[i] {
		case '{', '[':
			if depth == maxValidDepth {
				return false
			}
			obj := b[i] == '{'
			if obj {
				objects[depth/64] |= 1 << (depth % 64)
			} else {
				objects[depth/64] &^= 1 << (depth % 64)
			}
			depth++
			i = skipSpace(b, i+1)
			if i < len(b) && (obj && b[i] == '}' || !obj && b[i] == ']') {
				depth-- // empty: the container is a complete value
				i++
				break
			}
			if obj {
				if rec != nil {
					rec.keyStarts(depth, i)
				}
				if i = validMember(b, i); i < 0 {
					return false
				}
			}
			continue
		case '"':
			if i = validString(b, i); i < 0 {
				return false
			}
		case 't':
			if i = validLiteral(b, i, "true"); i < 0 {
				return false
			}
		case 'f':
			if i = validLiteral(b, i, "false"); i < 0 {
				return false
			}
		case 'n':
			if i = validLiteral(b, i, "null"); i < 0 {
				return false
			}
		default:
			if i = validNumber(b, i); i < 0 {
				return false
			}
		}

		// A value ended just before b[i]: close containers until a comma
		// asks for the next value, or the top-level value is done.
		for {
			if rec != nil {
				rec.valueEnds(b, depth, i)
			}
			i = skipSpace(b, i)
			if depth == 0 {
				return i == len(b)
			}
			if i >= len(b) {
				return false
			}
			d := depth - 1
			obj := objects[d/64]>>(d%64)&1 != 0
			switch c := b[i]; {
			case c == ',':
				i = skipSpace(b, i+1)
				if obj {
					if rec != nil {
						rec.keyStarts(depth, i)
					}
					if i = validMember(b, i); i < 0 {
						return false
					}
				}
				continue value
			case obj && c == '}', !obj && c == ']':
				depth--
				i++
			default:
				return false
			}
		}
	}
}

// maxValidDepth is encoding/json's nesting limit: 10000 nested arrays or
// objects are valid, 10001 are not.
const maxValidDepth = 10000

// validMember checks the `"key" :` that starts an object member at b[i]
// and returns the index of its value (whitespace skipped), or -1.
func validMember(b []byte, i int) int {
	if i >= len(b) || b[i] != '"' {
		return -1
	}
	if i = validString(b, i); i < 0 {
		return -1
	}
	i = skipSpace(b, i)
	if i >= len(b) || b[i] != ':' {
		return -1
	}
	return skipSpace(b, i+1)
}

// validString checks the string whose opening quote is b[i] and returns
// the index just past its closing quote, or -1.
func validString(b []byte, i int) int {
	for i++; ; i++ {
		// Skip plain bytes eight at a time while none of them needs a
		// look, then one at a time.
		for i+8 <= len(b) && !swarSpecial(binary.LittleEndian.Uint64(b[i:])) {
			i += 8
		}
		for i < len(b) && plainStringByte[b[i]] {
			i++
		}
		if i >= len(b) {
			return -1
		}
		switch b[i] {
		case '"':
			return i + 1
		case '\\':
			i++
			if i >= len(b) {
				return -1
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(b) || !isHex[b[i+1]] || !isHex[b[i+2]] || !isHex[b[i+3]] || !isHex[b[i+4]] {
					return -1 // a string cannot end inside \uXXXX either
				}
				i += 4
			default:
				return -1
			}
		default: // a control byte
			return -1
		}
	}
}

// swarSpecial reports whether any of the eight bytes in x is '"', '\\'
// or below 0x20, the bytes a string cannot simply pass over. Each term is
// the classic "has a byte less than n" bit trick (with n = 1 after an XOR
// for '"' and '\\'): a borrow may flag the wrong byte, but only above a
// byte that really is flagged, so "any" is exact.
func swarSpecial(x uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	quote := x ^ (ones * '"')
	backslash := x ^ (ones * '\\')
	return ((x-ones*0x20)&^x|(quote-ones)&^quote|(backslash-ones)&^backslash)&highs != 0
}

// validLiteral checks that the literal lit (true, false or null) is at
// b[i] and returns the index just past it, or -1.
func validLiteral(b []byte, i int, lit string) int {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return -1
	}
	return i + len(lit)
}

// validNumber checks the number that starts at b[i] and returns the index
// just past it, or -1. What may follow it is the caller's to check.
func validNumber(b []byte, i int) int {
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++ // no leading zeros: "01" is 0 followed by garbage
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		i = digitsEnd(b, i+1)
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		if i++; i >= len(b) || !isDigit(b[i]) {
			return -1
		}
		i = digitsEnd(b, i+1)
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		if i++; i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || !isDigit(b[i]) {
			return -1
		}
		i = digitsEnd(b, i+1)
	}
	return i
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// digitsEnd is the index of the first non-digit at or after b[i].
func digitsEnd(b []byte, i int) int {
	for i < len(b) && isDigit(b[i]) {
		i++
	}
	return i
}

// plainStringByte marks the bytes a string passes over without a look:
// all but '"', '\\' and the control bytes. isHex marks the hex digits.
var plainStringByte, isHex = func() (plain, hex [256]bool) {
	for c := 0x20; c < 256; c++ {
		plain[c] = c != '"' && c != '\\'
	}
	for _, c := range "0123456789abcdefABCDEF" {
		hex[c] = true
	}
	return
}()
