package addr

import "testing"

func TestLoopback(t *testing.T) {
	for in, want := range map[string]bool{
		"127.0.0.1:9470": true, "127.1.2.3:1": true, "[::1]:9470": true, "localhost:80": true, "LOCALHOST": true,
		"::1": true, "0.0.0.0:9470": false, "[::]:9470": false, "10.0.0.1:1": false, "evil.example:9470": false, "": false,
	} {
		if got := Loopback(in); got != want {
			t.Errorf("Loopback(%q) = %v, want %v", in, got, want)
		}
	}
}
