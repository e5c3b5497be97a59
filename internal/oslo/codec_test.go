package oslo

import (
	"encoding/json"
	"os/exec"
	"testing"
)

// PyJSON spaces and escapes as Python's json.dumps: checked against the
// real thing when Debian's python3 is there.
func TestPyJSONMatchesPython(t *testing.T) {
	cases := []struct {
		v    any
		py   string // the Python literal
		want string
	}{
		{map[string]any{"a": 1, "b": []any{"x", nil, true}}, `{"a": 1, "b": ["x", None, True]}`, `{"a": 1, "b": ["x", null, true]}`},
		{"héllo, wörld: 😀", `"héllo, wörld: 😀"`, `"h\u00e9llo, w\u00f6rld: \ud83d\ude00"`},
		{"<a&b>", `"<a&b>"`, `"<a&b>"`},
		{map[string]any{"k:,": "v,:\"q\""}, `{"k:,": "v,:\"q\""}`, `{"k:,": "v,:\"q\""}`},
		{[]any{}, `[]`, `[]`},
	}
	python := "/usr/bin/python3"
	if _, err := exec.LookPath(python); err != nil {
		python = ""
	}
	for _, tc := range cases {
		got, err := PyJSON(tc.v)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != tc.want {
			t.Errorf("PyJSON(%v): got %s, want %s", tc.v, got, tc.want)
		}
		if python == "" {
			continue
		}
		out, err := exec.Command(python, "-c", "import json,sys; sys.stdout.write(json.dumps("+tc.py+"))").Output()
		if err != nil {
			t.Fatalf("python3: %v", err)
		}
		if string(out) != tc.want {
			t.Errorf("python json.dumps(%s): got %s, the table says %s", tc.py, out, tc.want)
		}
	}
}

// refDecodeRequest is DecodeRequest written with encoding/json alone.
func refDecodeRequest(b []byte) (ctx, method, args string, ok bool) {
	var parts []json.RawMessage
	if json.Unmarshal(b, &parts) != nil || len(parts) != 2 {
		return "", "", "", false
	}
	var msg map[string]json.RawMessage
	if json.Unmarshal(parts[1], &msg) != nil || msg == nil {
		return "", "", "", false
	}
	var m *string
	if raw, ok := msg["method"]; ok && json.Unmarshal(raw, &m) != nil {
		return "", "", "", false
	}
	if m == nil || *m == "" {
		return "", "", "", false
	}
	a := string(msg["args"])
	if a == "" || a == "null" {
		a = "{}"
	}
	return string(parts[0]), *m, a, true
}

// The payload scanner takes requests and replies apart as encoding/json
// does, whatever the bytes.
func FuzzDecodeMatchesEncodingJSON(f *testing.F) {
	for _, s := range []string{
		`[{}, {"method": "m", "args": {}}]`, ` [ {"a": [1, "]"]} , {"args": {"x": "\"}"}, "method": "m\u00e9"} ] `,
		`[{}, {"method": 5, "method": "m"}]`, `[{}, {"method": "m", "method": null}]`, `[1, null]`, `[1, 2, 3]`,
		`[{}, {"method": "\ud800", "args": null}]`, `[{}, {"m\u0065thod": "x", "args": -1.5e3}]`, `[[], {"method": "a", "args": true}]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		rctx, rm, ra, ok := refDecodeRequest(b)
		// With and without the names of known methods, among them
		// names whose bytes are the escape of another.
		for _, names := range []map[string]string{nil, {"m": "m", "a": "a", "x": "x", "mé": "mé"}} {
			ctx, method, args, err := DecodeRequest(b, names)
			if (err == nil) != ok {
				t.Fatalf("DecodeRequest(%q): err %v, encoding/json accepts: %v", b, err, ok)
			}
			if ok && (string(ctx) != rctx || method != rm || string(args) != ra) {
				t.Fatalf("DecodeRequest(%q): got %s %q %s, encoding/json: %s %q %s", b, ctx, method, args, rctx, rm, ra)
			}
		}
		var parts []json.RawMessage
		refOK := json.Unmarshal(b, &parts) == nil && len(parts) == 2
		first, second, err := SplitPair(b)
		if refOK != (err == nil) {
			t.Fatalf("SplitPair(%q): err %v, encoding/json takes it as two elements: %v", b, err, refOK)
		}
		if refOK && (string(first) != string(parts[0]) || string(second) != string(parts[1])) {
			t.Fatalf("SplitPair(%q): %s, %s; encoding/json: %s, %s", b, first, second, parts[0], parts[1])
		}
	})
}

// A request is written as oslo.messaging writes it, byte for byte, with
// room past its end when asked, and read back.
func TestAppendRequest(t *testing.T) {
	for _, tc := range []struct{ method, want string }{
		{"echo", `[{}, {"method": "echo", "args": {"a": 1}}]`},
		{"é\"", `[{}, {"method": "\u00e9\"", "args": {"a": 1}}]`},
	} {
		got, err := AppendRequest(nil, tc.method, []byte(`{"a": 1}`), 36)
		if err != nil || string(got) != tc.want || cap(got)-len(got) < 36 {
			t.Errorf("AppendRequest(%q): %s (room %d), %v; want %s and room for 36", tc.method, got, cap(got)-len(got), err, tc.want)
		}
		_, method, args, err := DecodeRequest(got, nil)
		if err != nil || method != tc.method || string(args) != `{"a": 1}` {
			t.Errorf("DecodeRequest(%s): %q %s %v", got, method, args, err)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = AppendRequest(nil, "echo", []byte(`{}`), 36) }); n != 1 {
		t.Errorf("AppendRequest: %v allocations, want 1", n)
	}
	payload := []byte(`[{}, {"method": "echo", "args": {"a": 1}}]`)
	names := map[string]string{"echo": "echo"}
	if n := testing.AllocsPerRun(100, func() { _, _, _, _ = DecodeRequest(payload, names) }); n != 0 {
		t.Errorf("DecodeRequest of a known method: %v allocations, want 0", n)
	}
}

// decodeRequestTwoPass is DecodeRequest as it was before the one-pass
// scan: Valid, then scans for the elements and the members.
func decodeRequestTwoPass(payload []byte, names map[string]string) (ctx []byte, method string, args []byte, err error) {
	var parts [2][]byte
	if splitArrayTwoPass(payload, parts[:]) != 2 || parts[1][0] != '{' {
		return nil, "", nil, ErrNotRequest
	}
	methodOK := true
	ObjectFields(parts[1], func(key string, value []byte) {
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
	})
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

// The one-pass scan finds what Valid and the scans after it found, for
// any bytes: the same verdict, the same elements (as many as asked for,
// and the same count), the same method, args and error.
func FuzzOnePassMatchesTwoPass(f *testing.F) {
	for _, s := range []string{
		`[{}, {"method": "m", "args": {}}]`, ` [ {"a": [1, "]"]} , {"args": {"x": "\"}"}, "method": "m\u00e9"} ] `,
		`[{}, {"method": 5, "method": "m"}]`, `[1, null]`, `[1, 2, 3]`, `[]`, `{"a": [1, 2]}`, `[[{"method": "x"}], {}]`,
		`[{}, {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6, "g": 7, "h": 8, "method": "m", "args": [1]}]`,
		`[{}, {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6, "method": "m", "args": [1]}]`,
		`[{}, {"method": "m", "args": {"method": "n"}}, {"method": "o"}]`, `[{}, {"m\u0065thod": "x", "args": -1.5e3 }]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for size := range 4 {
			got, want := make([][]byte, size), make([][]byte, size)
			n, wn := SplitArray(b, got), splitArrayTwoPass(b, want)
			if n != wn {
				t.Fatalf("SplitArray(%q, %d slots) = %d, two passes: %d", b, size, n, wn)
			}
			for i := range min(max(n, 0), size) {
				if string(got[i]) != string(want[i]) {
					t.Fatalf("SplitArray(%q): element %d %q, two passes: %q", b, i, got[i], want[i])
				}
			}
		}
		for _, names := range []map[string]string{nil, {"m": "m", "x": "x"}} {
			ctx, method, args, err := DecodeRequest(b, names)
			wctx, wmethod, wargs, werr := decodeRequestTwoPass(b, names)
			if err != werr || string(ctx) != string(wctx) || method != wmethod || string(args) != string(wargs) {
				t.Fatalf("DecodeRequest(%q): %s %q %s %v; two passes: %s %q %s %v", b, ctx, method, args, err, wctx, wmethod, wargs, werr)
			}
		}
	})
}

func BenchmarkDecodeRequest(b *testing.B) {
	payload, _ := AppendRequest(nil, "count", []byte(`{"data": "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`), 0)
	names := map[string]string{"count": "count"}
	for _, bc := range []struct {
		name   string
		decode func([]byte, map[string]string) ([]byte, string, []byte, error)
	}{{"OnePass", DecodeRequest}, {"TwoPass", decodeRequestTwoPass}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, _, err := bc.decode(payload, names); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
