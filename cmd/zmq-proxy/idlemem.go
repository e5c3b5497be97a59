package main

import (
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// After a burst of traffic the Go heap keeps the memory the burst used:
// the runtime returns free pages to the kernel only gradually, and a proxy
// that allocates nothing while idle runs no garbage collection until the
// runtime forces one after two minutes. Measured on a central proxy after
// 8 s of cast and fanout (1 KiB messages): 38 MB RSS (14.5 MB anonymous),
// still 36 MB two minutes later, 31 MB after four. idleRelease gives that
// memory back at the first quiet interval after a busy one; start-up counts
// as busy, and the pages of the executable that start-up mapped go too
// (releaseTextPages).
const (
	// idleCheck is how often the serve loop looks.
	idleCheck = 10 * time.Second
	// busyAlloc is what the heap must have allocated within one interval
	// for it to count as busy. An idle proxy allocates a few KB per
	// interval (a /metrics scrape, the registry's keep-alives); a proxy
	// that routes allocates megabytes, or nothing at all (the data path
	// allocates nothing per message): so quiet needs little CPU too.
	busyAlloc = 4 << 20
	// quietCPU is the most CPU time (user and system) an interval may use
	// to be quiet: 1% of idleCheck. An idle proxy uses a few milliseconds.
	quietCPU = idleCheck / 100
)

// idleRelease frees the heap's unused memory and unmaps the executable's
// clean pages once after an interval in which the heap allocated at least
// busyAlloc (or the start, with busy set): at the first quiet interval
// after it, one that allocated less and used less than quietCPU of CPU
// time. It is used by one goroutine.
type idleRelease struct {
	sample  []metrics.Sample
	last    uint64        // cumulative bytes allocated at the previous tick
	lastCPU time.Duration // the process's CPU time at the previous tick
	busy    bool          // allocated busyAlloc in an interval since the last release
}

// newIdleRelease returns an idleRelease that counts start-up, until now,
// as busy.
func newIdleRelease() *idleRelease {
	r := &idleRelease{busy: true}
	r.last, r.lastCPU = r.allocated(), processCPU()
	return r
}

// allocated returns the bytes the heap has allocated since the program
// started.
func (r *idleRelease) allocated() uint64 {
	if r.sample == nil {
		r.sample = []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	}
	metrics.Read(r.sample)
	return r.sample[0].Value.Uint64()
}

// tick is called every idleCheck. It reports whether it released memory:
// releaseTextPages, then a full collection that returns every free page
// to the kernel (debug.FreeOSMemory; a few milliseconds for an idle
// proxy's heap).
func (r *idleRelease) tick() bool {
	now, cpu := r.allocated(), processCPU()
	allocBusy := now-r.last >= busyAlloc
	quiet := !allocBusy && cpu-r.lastCPU < quietCPU
	r.last, r.lastCPU = now, cpu
	if allocBusy {
		r.busy = true
	}
	if !quiet || !r.busy {
		return false
	}
	r.busy = false
	releaseTextPages() // first: the collection frees what reading smaps took
	debug.FreeOSMemory()
	return true
}
