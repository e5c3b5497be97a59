package rpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
	"github.com/zmq-proxy/zmq-proxy/transport"
)

// benchSystem is one proxy, servers of topic "b" that count (s1, s2, ...),
// and a client, in this process.
func benchSystem(b *testing.B, acks bool, servers int) (*Client, *atomic.Int64) {
	sys := newSystem(b, 1)
	var handled atomic.Int64
	for i := range servers {
		sys.server(ServerConfig{Topic: "b", Server: fmt.Sprintf("s%d", i+1), Acks: acks, Handlers: map[string]Handler{
			"count": func(context.Context, *Message) (any, error) { handled.Add(1); return nil, nil },
		}})
	}
	c := sys.client(ClientConfig{Acks: acks})
	testutil.CheckFor(b, wait, func() error {
		if _, up := c.links.count(); len(c.disc.identities("b")) != servers || up != 1 {
			return fmt.Errorf("%d servers, %d proxies up", len(c.disc.identities("b")), up)
		}
		return nil
	})
	return c, &handled
}

// benchArgs make a request payload of 100 bytes: [{}, {"method": "count", "args": {...}}].
var benchArgs = json.RawMessage(`{"data": "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}`)

// benchWindow bounds the messages sent and not yet handled, so that a
// benchmark measures the steady state of sender, proxy and server instead
// of a queue that fills until the high-water mark (1000 messages at the
// proxy) drops what comes next.
const benchWindow = 512

// processCPU is this process's user+system CPU time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchSend runs send b.N times, waits for every delivery (deliveries per
// message: per), and reports the lost deliveries and the process's CPU
// per message (client, proxy and servers, all in this process: the
// profile splits it).
func benchSend(b *testing.B, handled *atomic.Int64, per int64, send func() error) {
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	for i := range int64(b.N) {
		for (i+1)*per-handled.Load() > benchWindow {
			time.Sleep(20 * time.Microsecond)
		}
		err := send()
		for errors.Is(err, ErrBusy) {
			time.Sleep(10 * time.Microsecond)
			err = send()
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	want := int64(b.N) * per
	deadline := time.Now().Add(5 * time.Second)
	for handled.Load() < want && time.Now().Before(deadline) {
		time.Sleep(100 * time.Microsecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(processCPU()-cpu0)/1e3/float64(b.N), "cpu-us/op")
	b.ReportMetric(float64(want-handled.Load()), "lost")
}

func benchCast(b *testing.B, acks bool, servers int) {
	c, handled := benchSystem(b, acks, servers)
	ctx := context.Background()
	var args any = benchArgs // boxed once: the caller's allocation is not the client's
	benchSend(b, handled, 1, func() error { return c.Cast(ctx, Target{Topic: "b"}, "count", args) })
}

// BenchmarkCast: a client casts 100-byte requests to one server through
// one proxy, all in this process; per op: the client's send, the proxy's
// routing and the server's receive, dedup and handler.
func BenchmarkCast(b *testing.B)      { benchCast(b, false, 1) }
func BenchmarkCastAcked(b *testing.B) { benchCast(b, true, 2) }

// BenchmarkFanout: as BenchmarkCast, through the proxy's publisher.
func BenchmarkFanout(b *testing.B) {
	c, handled := benchSystem(b, false, 1)
	ctx := context.Background()
	testutil.CheckFor(b, wait, func() error { // the subscription reaches the publisher after the connection
		if err := c.Fanout(ctx, "b", "count", benchArgs); err != nil {
			return err
		}
		if handled.Load() == 0 {
			return errors.New("no fanout handled yet")
		}
		return nil
	})
	testutil.CheckFor(b, wait, func() error { // the probes' stragglers
		n := handled.Load()
		time.Sleep(50 * time.Millisecond)
		if handled.Load() != n {
			return errors.New("still arriving")
		}
		return nil
	})
	handled.Store(0)
	var args any = benchArgs
	benchSend(b, handled, 1, func() error { return c.Fanout(ctx, "b", "count", args) })
}

// BenchmarkCall16 keeps 16 calls outstanding.
func BenchmarkCall16(b *testing.B) {
	c, _ := benchSystem(b, false, 2)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
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
	b.StopTimer()
	b.ReportMetric(float64(processCPU()-cpu0)/1e3/float64(b.N), "cpu-us/op")
}

// BenchmarkCall1 is one call at a time: the round trip.
func BenchmarkCall1(b *testing.B) {
	c, _ := benchSystem(b, false, 1)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if _, err := c.Call(ctx, Target{Topic: "b"}, "count", benchArgs); err != nil {
			b.Fatal(err)
		}
	}
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

// BenchmarkServerReceive is a server's receive path alone: batches of 32
// CASTs (100-byte requests, fresh ids) as one read of a backend brings
// them, parsed, remembered, handed to the workers, decoded and handled.
func BenchmarkServerReceive(b *testing.B) {
	sys := newSystem(b, 0)
	var handled atomic.Int64
	s := sys.server(ServerConfig{Topic: "b", Server: "s1", Handlers: map[string]Handler{
		"count": func(context.Context, *Message) (any, error) { handled.Add(1); return nil, nil },
	}})
	payload, err := encodeRequest("count", benchArgs)
	if err != nil {
		b.Fatal(err)
	}
	const per = 32
	msgs := make([]transport.Msg, b.N) // made before the timer: the server's allocations alone are counted
	for i := range msgs {
		msgs[i] = transport.Msg{nil, version10, []byte("client/1"), typeFrame[transport.TypeCast], []byte(newID(0)), payload}
	}
	l := &link{}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU()
	for i := 0; i < b.N; i += per {
		for int64(i)-handled.Load() > benchWindow {
			time.Sleep(20 * time.Microsecond)
		}
		s.recv(l, transport.NewBatch(nil, msgs[i:min(i+per, b.N)]...))
	}
	for handled.Load() < int64(b.N) {
		time.Sleep(20 * time.Microsecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(processCPU()-cpu0)/1e3/float64(b.N), "cpu-us/op")
}
