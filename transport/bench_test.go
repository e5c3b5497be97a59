package transport

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"testing"

	"github.com/go-zeromq/zmq4"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
)

// BenchmarkRouterRoute is a proxy's hot path for direct messages: parse
// the envelope of each message of a received batch and queue it to the
// destination peer. The peer is a real connection whose writer drains to
// a socket that a goroutine reads and discards. One op is one message.
// When the peer's queue is full the loop yields until the writer makes
// room, so the figure is the pipeline's throughput with nothing dropped;
// full/op says how often that happened.
func BenchmarkRouterRoute(b *testing.B) {
	r := startRouter(b, Options{}) // the default HWM
	dst := dialRaw(b, r.Addr(), zmq4.Dealer, "host/topic/server", 0)
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		io.Copy(io.Discard, dst.conn)
	}()
	b.Cleanup(func() { dst.conn.Close(); <-drained })
	testutil.CheckFor(b, wait, func() error {
		if r.Connected([]byte("host/topic/server")) {
			return nil
		}
		return errors.New("the destination connected")
	})

	// A batch as a frontend ROUTER reads it: 64 CALLs to the same server.
	const batchLen = 64
	batch := NewBatch([]byte("client-host/6f1c2a44-5b0e-4d93-9a3e-d27b5c7d1a00"))
	defer batch.Release()
	for i := range batchLen {
		batch.Msgs = append(batch.Msgs, Msg(frames("", "1.0", "1", "host/topic/server",
			fmt.Sprintf("8e5b0c3a-1f7d-4c8a-b2e9-0f6a3d9c%04d", i), string(make([]byte, 200)))))
	}
	var head [5][]byte
	st := r.Stats()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		env, err := ParseEnvelope(batch.Peer, batch.Msgs[i%batchLen])
		if err != nil {
			b.Fatal(err)
		}
		for !r.Send(env.RoutingKey, env.DirectHead(&head), env.Payload) {
			runtime.Gosched()
		}
	}
	b.ReportMetric(float64(st.DroppedHWM.Load())/float64(b.N), "full/op")
}
