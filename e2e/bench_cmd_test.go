package e2e

import (
	"encoding/json"
	"strings"
	"testing"
)

// zmq-proxy bench against a real proxy: every operation is counted at the
// bench's own servers, with exact counts. Cast and fanout keep a window of
// deliveries in flight, so nothing is lost at the proxy's high-water
// mark.
func TestBenchCommand(t *testing.T) {
	ours(t)
	f := startFabric(t, 1, 0)
	u := etcdURL(f.etcd)
	type result struct {
		Mode       string  `json:"mode"`
		Sent       uint64  `json:"sent"`
		Failed     uint64  `json:"failed"`
		Rate       float64 `json:"rate"`
		Latency    string  `json:"latency"`
		P50        float64 `json:"p50_us"`
		P99        float64 `json:"p99_us"`
		CPUPerMsg  float64 `json:"cpu_us_per_msg"`
		Lost       int64   `json:"lost"`
		Duplicated int64   `json:"duplicated"`
		Window     int     `json:"window"`
		Servers    int     `json:"servers"`
	}
	for _, c := range []struct {
		args   []string
		count  uint64
		window int
	}{
		{[]string{"call", "--outstanding", "4", "--count", "400"}, 400, 0},
		{[]string{"cast", "--count", "3000", "--window", "32"}, 3000, 32},
		{[]string{"cast", "--count", "500", "--acks", "--outstanding", "8"}, 500, 256},
		{[]string{"fanout", "--count", "300", "--servers", "3"}, 300, 256},
	} {
		out, errOut, code := runCmd(t, append(append([]string{"bench"}, c.args...), "--json", "-u", u)...)
		var r result
		if code != 0 || json.Unmarshal([]byte(lastLine(out)), &r) != nil {
			t.Fatalf("bench %v: exit %d, stdout %q, stderr %q", c.args, code, out, errOut)
		}
		if r.Mode != c.args[0] || r.Sent != c.count || r.Failed != 0 || r.Lost != 0 || r.Duplicated != 0 || r.Window != c.window || r.Rate <= 0 {
			t.Errorf("bench %v: %+v; want %d sent, none failed, lost or duplicated, window %d", c.args, r, c.count, c.window)
		}
		// call: the round trip; cast and fanout: delivery to the bench's
		// servers (another process away from the proxy: never 0 µs).
		if want := map[bool]string{true: "round_trip", false: "delivery"}[c.args[0] == "call"]; r.Latency != want ||
			r.P50 <= 0 || r.P99 < r.P50 || r.CPUPerMsg <= 0 {
			t.Errorf("bench %v: latency %q p50 %v p99 %v, cpu/msg %v; want %s, 0 < p50 <= p99, cpu > 0", c.args, r.Latency, r.P50, r.P99, r.CPUPerMsg, want)
		}
	}
}

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
