package rpc

import (
	"fmt"

	"context"
	"encoding/json"
	"errors"
	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// benchSystem is one proxy, two servers of topic "b" that count, and a
// client, in this process.
func benchSystem(b *testing.B, acks bool) (*Client, *atomic.Int64) {
	sys := newSystem(b, 1)
	var handled atomic.Int64
	for _, name := range []string{"s1", "s2"} {
		sys.server(ServerConfig{Topic: "b", Server: name, Acks: acks, Handlers: map[string]Handler{
			"count": func(context.Context, *Message) (any, error) { handled.Add(1); return nil, nil },
		}})
	}
	c := sys.client(ClientConfig{Acks: acks})
	testutil.CheckFor(b, wait, func() error {
		if _, up := c.links.count(); len(c.disc.identities("b")) != 2 || up != 1 {
			return fmt.Errorf("%d servers, %d proxies up", len(c.disc.identities("b")), up)
		}
		return nil
	})
	return c, &handled
}

var benchArgs = json.RawMessage(`{"data": "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`)

func benchCast(b *testing.B, acks bool) {
	c, handled := benchSystem(b, acks)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		err := c.Cast(ctx, Target{Topic: "b"}, "count", benchArgs)
		for errors.Is(err, ErrBusy) {
			time.Sleep(10 * time.Microsecond)
			err = c.Cast(ctx, Target{Topic: "b"}, "count", benchArgs)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	// Without acks a cast the proxy could not queue is lost: report it.
	deadline := time.Now().Add(5 * time.Second)
	for handled.Load() < int64(b.N) && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	b.ReportMetric(float64(int64(b.N)-handled.Load()), "lost")
}

func BenchmarkCast(b *testing.B)      { benchCast(b, false) }
func BenchmarkCastAcked(b *testing.B) { benchCast(b, true) }

// BenchmarkCall16 keeps 16 calls outstanding.
func BenchmarkCall16(b *testing.B) {
	c, _ := benchSystem(b, false)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if _, err := c.Call(ctx, Target{Topic: "b"}, "count", benchArgs); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// BenchmarkEncodeRequest is the client's per-message encoding.
func BenchmarkEncodeRequest(b *testing.B) {
	args := map[string]any{"value": "hello", "n": 42}
	b.ReportAllocs()
	for range b.N {
		if _, err := encodeRequest("echo", args); err != nil {
			b.Fatal(err)
		}
	}
}
