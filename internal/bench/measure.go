package bench

import (
	"bytes"
	"fmt"
	"math/bits"
	"os"
	"runtime/pprof"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

// What bench measures, apart from its flow (bench.go): the latency
// figures, the bench process's CPU per message and its CPU profile.
//
//   - call: round trip, from Call to its reply, at the client.
//   - cast and fanout to the bench's own servers: delivery, from just
//     before Cast (Fanout) is called to the handler's start at a server,
//     once per message and server (the time of the send is carried in the
//     message's arguments, "sent_ns"); how long Cast took to return is
//     reported apart (send_*).
//   - cast and fanout with --target: only how long the send took to
//     return (nothing tells the bench when a server handled it).

// benchEpoch is the bench's clock's zero: sent_ns is monotonic time since.
var benchEpoch = time.Now()

func benchNow() int64 { return int64(time.Since(benchEpoch)) }

// benchArgs are the arguments of message seq, sent at sentNs:
// {"seq": N, "sent_ns": T, "data": "x..."}.
func benchArgs(seq uint64, sentNs int64, data string) []byte {
	b := make([]byte, 0, 64+len(data))
	b = append(b, `{"seq": `...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `, "sent_ns": `...)
	b = strconv.AppendInt(b, sentNs, 10)
	b = append(b, `, "data": "`...)
	b = append(b, data...)
	return append(b, `"}`...)
}

// seqOf reads the seq that benchArgs wrote.
func seqOf(args []byte) (uint64, bool) {
	rest, ok := bytes.CutPrefix(args, []byte(`{"seq": `))
	if !ok {
		return 0, false
	}
	i := bytes.IndexByte(rest, ',')
	if i <= 0 {
		return 0, false
	}
	n, err := strconv.ParseUint(string(rest[:i]), 10, 64)
	return n, err == nil
}

// sentOf reads the sent_ns that benchArgs wrote.
func sentOf(args []byte) (int64, bool) {
	const key = `, "sent_ns": `
	i := bytes.Index(args, []byte(key))
	if i < 0 {
		return 0, false
	}
	rest := args[i+len(key):]
	j := bytes.IndexByte(rest, ',')
	if j <= 0 {
		return 0, false
	}
	n, err := strconv.ParseInt(string(rest[:j]), 10, 64)
	return n, err == nil
}

// latHist is a histogram of latencies that handlers on many goroutines
// record into without a lock: 1 µs buckets below 1024 µs, and above, 512
// buckets per power of two (within 0.2%).
type latHist struct {
	buckets [histBuckets]atomic.Uint64
	n       atomic.Uint64
}

const (
	histLinear  = 1024
	histSub     = 512
	histBuckets = histLinear + 54*histSub
)

func histIndex(us uint64) int {
	if us < histLinear {
		return int(us)
	}
	shift := bits.Len64(us) - 10 // us>>shift in [512, 1024)
	return histLinear + (shift-1)*histSub + int(us>>shift) - histSub
}

// histValue is the lowest latency, in µs, of bucket i.
func histValue(i int) uint64 {
	if i < histLinear {
		return uint64(i)
	}
	shift := (i-histLinear)/histSub + 1
	return uint64((i-histLinear)%histSub+histSub) << shift
}

func (h *latHist) record(d time.Duration) {
	us := uint64(max(d, 0) / time.Microsecond)
	h.buckets[min(histIndex(us), histBuckets-1)].Add(1)
	h.n.Add(1)
}

// pct is the p-quantile in µs (0 when empty), as pct of a sorted slice
// reads it.
func (h *latHist) pct(p float64) float64 {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := min(uint64(float64(n)*p), n-1)
	var seen uint64
	for i := range h.buckets {
		if seen += h.buckets[i].Load(); seen > rank {
			return float64(histValue(i))
		}
	}
	return float64(histValue(histBuckets - 1))
}

// processCPU is the bench process's user and system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// startCPUProfile writes the bench's CPU profile to path ("" = none)
// until the returned stop is called.
func startCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
