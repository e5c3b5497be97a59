package oslo

import (
	"encoding/json"
	"strings"
	"testing"
)

// validJSONCases are inputs at the edges of encoding/json's grammar; what
// Valid must say for each is whatever json.Valid says.
var validJSONCases = []string{
	// Empty, whitespace, and what counts as whitespace.
	"", " ", "\t\n\r ", "0", " 0 ", "\t[\n1\r,\t2 ]\n", "[1,\v2]", "\f0", "0\f",
	"\u00a00", "0\u00a0", "\u20280", "\ufeff0", "\x000", "0\x00",
	// Literals.
	"true", "false", "null", "tru", "nul", "truee", "True", "NULL", "nulll", "[true,false,null]", "[truefalse]",
	// Numbers.
	"0", "-0", "1", "-1", "123", "01", "-01", "00", "0.0", "0.", ".0", "-", "+1", "--1", "1.5", "-1.5",
	"1e5", "1E5", "1e+5", "1e-5", "1E-05", "1e", "1e+", "1e-", "1.e5", "1.5e", "1.5e5x", "0e0", "-0.0e-0",
	"1ee5", "1.2.3", "0x10", "1_000", "Infinity", "-Infinity", "NaN", "[-]", "[1e]", "[0.]", "[01]", "[1,2.5e3,-0]",
	"12345678901234567890123456789012345678901234567890e999999999", "-", "- 1", "1 2", "[1 2]",
	// Strings and escapes.
	`""`, `"a"`, `"`, `"abc`, `"\"`, `"\\"`, `"\""`, `"\/"`, `"\b\f\n\r\t"`, `"\a"`, `"\x41"`, `"\'"`, `"\0"`,
	`"\u"`, `"\u1"`, `"\u12"`, `"\u123"`, `"\u1234"`, `"\uABCD"`, `"\uabcd"`, `"\uAbCd"`, `"\u12345"`, `"\u123g"`,
	`"\uGGGG"`, `"\U1234"`, `"\ud800"`, `"\udc00"`, `"\ud800\udc00"`, `"\udbff\udfff"`, `"\ud800\u0041"`, `"\\\\\""`,
	`"\u00`, `"\`, `"\u0000"`, `"a\\"b"`, `'a'`, "\"\x00\"", "\"\x1f\"", "\"\x20\"", "\"\x7f\"", "\"\t\"", "\"\n\"",
	"\"\x80\"", "\"\xff\"", "\"\xc3\x28\"", "\"\xed\xa0\x80\"", "\"\xf4\x90\x80\x80\"", "\"\xe2\x82\"", "\"é\"",
	"\"\xc0\xaf\"", "\x80", "[\xff]", "\xef\xbb\xbf\"bom\"", `"0123456789abcdef0123456789abcdef"`,
	"\"0123456789abcdef\x01\"", "\"01234567\"\"", "\"0123456789\\n0123456789\\\"012345\"",
	// Arrays, objects and their punctuation.
	"[]", "[ ]", "[", "]", "[[]", "[]]", "[,]", "[1,]", "[,1]", "[1,,2]", "[1;2]", "[[[]]]", "[[],[[]],{}]",
	"{}", "{ }", "{", "}", "{}}", `{"a":1}`, `{"a" : 1 , "b":[2]}`, `{"a":1,}`, `{,"a":1}`, `{"a"}`, `{"a":}`,
	`{"a" 1}`, `{a:1}`, `{1:1}`, `{"a":1 "b":2}`, `{"a":1,"a":2}`, `{"a":{"b":{"c":[]}}}`, `{"a":1]`, `[1}`,
	`{"a":[}`, `[{"a":1},{"b":[true,null]}]`, `{"":""}`, `{"\u00e9":0}`, `{"a\":1}`,
	// Trailing garbage and more than one value.
	"[] x", "[]x", "{}{}", "[][]", "1 1", `"a""b"`, `"a" "b"`, "null,", "[]\x00", "1/", "[] //c", "1#",
	// The payload shapes the package carries.
	`[{}, {"method": "echo", "args": {"data": "x"}}]`, `[{"k": "v"}, {"method": "m\u00e9", "args": {}}]`,
	`[null, "{\"class\": \"E\"}"]`, `[{}, {"method": 5, "method": "m"}]`, `[1, null]`,
}

// deepJSON is n nested arrays, with an object at the bottom if obj.
func deepJSON(n int, obj bool) string {
	inner := ""
	if obj {
		inner = `{"a":{}}`
	}
	return strings.Repeat("[", n) + inner + strings.Repeat("]", n)
}

func validJSONTable() []string {
	cases := append([]string(nil), validJSONCases...)
	for _, n := range []int{9998, 9999, 10000, 10001, 20000} {
		cases = append(cases,
			deepJSON(n, false),
			deepJSON(n-2, true), // the object and its member add two levels
			strings.Repeat(`{"a":`, n)+"0"+strings.Repeat("}", n),
			strings.Repeat("[", n),                          // unclosed
			strings.Repeat("[", n)+strings.Repeat("]", n-1), // one short
			strings.Repeat(`[1,`, n)+"2"+strings.Repeat("]", n),
		)
	}
	return cases
}

// Valid says what json.Valid says, at every edge of the grammar.
func TestValidJSON(t *testing.T) {
	for _, s := range validJSONTable() {
		want := json.Valid([]byte(s))
		if got := Valid([]byte(s)); got != want {
			if len(s) > 80 {
				s = s[:40] + "..." + s[len(s)-40:]
			}
			t.Errorf("Valid(%q) = %v, json.Valid: %v", s, got, want)
		}
	}
	// The depth limit is encoding/json's, exactly.
	for n, want := range map[int]bool{10000: true, 10001: false} {
		if got := Valid([]byte(deepJSON(n, false))); got != want {
			t.Errorf("Valid of %d nested arrays = %v, want %v", n, got, want)
		}
	}
	// Every byte alone, after a value, escaped, and inside a string, plain
	// and escaped, at each place of the eight-byte words validString skips
	// over.
	for c := 0; c < 256; c++ {
		cs := string([]byte{byte(c)})
		cases := []string{cs, "[0" + cs + "]", "\"\\" + cs + "\"", "\"" + string(rune(c)) + "\""}
		for k := range 18 {
			a, b := strings.Repeat("a", k), strings.Repeat("b", 17-k)
			cases = append(cases, "\""+a+cs+b+"\"", "\""+a+"\\"+cs+b+"\"")
		}
		for _, s := range cases {
			if got, want := Valid([]byte(s)), json.Valid([]byte(s)); got != want {
				t.Errorf("Valid(%q) = %v, json.Valid: %v", s, got, want)
			}
		}
	}
	// Every prefix of the cases: mostly inputs cut short, which must fail.
	for _, s := range validJSONCases {
		for i := range len(s) {
			if got, want := Valid([]byte(s[:i])), json.Valid([]byte(s[:i])); got != want {
				t.Errorf("Valid(%q) = %v, json.Valid: %v", s[:i], got, want)
			}
		}
	}
}

// Valid never allocates, even on deep or hostile input.
func TestValidJSONAllocs(t *testing.T) {
	deep := []byte(deepJSON(10000, false))
	if n := testing.AllocsPerRun(10, func() { Valid(deep) }); n != 0 {
		t.Errorf("Valid allocates %v times", n)
	}
}

func FuzzValidJSON(f *testing.F) {
	for _, s := range validJSONCases {
		f.Add([]byte(s))
	}
	for _, n := range []int{10000, 10001} {
		f.Add([]byte(deepJSON(n, false)))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := Valid(b), json.Valid(b); got != want {
			t.Fatalf("Valid(%q) = %v, json.Valid: %v", b, got, want)
		}
	})
}

func BenchmarkValidJSON(b *testing.B) {
	payload := []byte(`[{}, {"method": "echo", "args": {"data": "` + strings.Repeat("x", 100) + `"}}]`)
	for _, bc := range []struct {
		name  string
		valid func([]byte) bool
	}{{"Valid", Valid}, {"json.Valid", json.Valid}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(payload)))
			for b.Loop() {
				if !bc.valid(payload) {
					b.Fatal("payload not valid")
				}
			}
		})
	}
}
