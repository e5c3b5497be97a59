package actors

import cmap "github.com/orcaman/concurrent-map"

// pidShards is how many shards each of the 1024 buckets of protoactor's
// process registry (the map from actor name to process) has.
//
// protoactor builds that registry when an actor system is made: 1024
// concurrent maps (github.com/orcaman/concurrent-map), each of
// cmap.SHARD_COUNT shards with a mutex and a Go map. At the library's
// default of 32 shards that is 32,768 maps, 2.8 MB of heap and 66,000
// objects for the GC to mark, in a proxy that registers a few dozen actors
// (one per socket and helper, not per peer). The 1024 buckets, chosen by a
// hash of the name, already spread the locks; one shard in each is enough.
//
// cmap reads SHARD_COUNT at every operation, so it is set once here, in
// init, before any actor system (the only user of cmap in this program)
// exists, and never changed. TestActorSystemHeap measures the saving.
const pidShards = 1

func init() { cmap.SHARD_COUNT = pidShards }
