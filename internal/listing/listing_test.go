package listing

import "testing"

// TestPrinterField: a record's text cannot break the columns.
func TestPrinterField(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "-"},
		{"tcp://h:1", "tcp://h:1"},
		{"a b", `"a b"`},
		{"a\tb", `"a\tb"`},
		{"\x1b[31mred", `"\x1b[31mred"`},
		{"héte", "héte"},
	}
	for _, tt := range tests {
		if got := field(tt.in); got != tt.want {
			t.Errorf("field(%q): got %q, want %q", tt.in, got, tt.want)
		}
	}
}
