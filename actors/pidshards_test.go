package actors

import (
	"runtime"
	"testing"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
)

// An actor system costs little heap: protoactor's process registry is 1024
// maps of pidShards shards, not of cmap's default 32 (2.8 MB).
func TestActorSystemHeap(t *testing.T) {
	// Well above what 1024 one-shard maps take (about 110 KB), well below
	// the 2.8 MB (66,000 objects) of the library's 32 shards.
	const bound = 1 << 20
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	sys := newActorSystem(testutil.Quiet())
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(sys)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("newActorSystem allocated %d KiB in %d objects", allocated>>10, after.Mallocs-before.Mallocs)
	if allocated > bound {
		t.Errorf("newActorSystem allocated %d KiB, want at most %d KiB", allocated>>10, bound>>10)
	}
}
