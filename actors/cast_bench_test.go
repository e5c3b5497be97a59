package actors

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
	"github.com/zmq-proxy/zmq-proxy/transport"
)

// BenchmarkProxyCast is a CAST's whole path through a double-router
// proxy in this process: a client DEALER sends bursts of 64 CASTs to the
// frontend, the proxy routes them to a server DEALER on the backend. One
// op is one CAST delivered; at most window CASTs are in flight, so none
// is dropped at a high-water mark (dropped/op says if one was).
func BenchmarkProxyCast(b *testing.B) {
	const burst, window = 64, 512
	p, err := New(Config{Kind: KindDoubleRouter, Host: "127.0.0.1", Logger: testutil.Quiet(), Registry: RegistryConfig{Disabled: true}})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	var got atomic.Int64
	arrived := make(chan struct{}, 1)
	server := transport.NewDealer(transport.Options{Identity: []byte("server-1"), OnBatch: func(bt *transport.Batch) {
		got.Add(int64(len(bt.Msgs)))
		bt.Release()
		select {
		case arrived <- struct{}{}:
		default:
		}
	}})
	defer server.Close()
	client := transport.NewDealer(transport.Options{Identity: []byte("client-1")})
	defer client.Close()
	if err := server.Connect(p.Addrs().Backend); err != nil {
		b.Fatal(err)
	}
	if err := client.Connect(p.Addrs().Frontend); err != nil {
		b.Fatal(err)
	}
	testutil.CheckFor(b, wait, func() error {
		if client.Connected() == 1 && p.Stats(BackendName).Peers.Load() == 1 {
			return nil
		}
		return errors.New("client and server not connected")
	})
	msgs := make([][][]byte, burst)
	for i := range msgs {
		msgs[i] = [][]byte{{}, []byte("1.0"), []byte("2"), []byte("server-1"),
			[]byte(fmt.Sprintf("8e5b0c3a-1f7d-4c8a-b2e9-0f6a3d9c%04d", i)), make([]byte, 100)}
	}
	// next waits for a delivery; a CAST that is lost (it would be
	// counted as dropped) fails the benchmark instead of hanging it.
	next := func() {
		select {
		case <-arrived:
		case <-time.After(wait):
			b.Fatalf("delivered %d, nothing more for %v", got.Load(), wait)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	sent := 0
	for sent < b.N {
		for i := 0; i < burst && sent < b.N; i++ {
			for !client.Send(msgs[i], nil) {
				next()
			}
			sent++
		}
		for int64(sent)-got.Load() > window {
			next()
		}
	}
	for got.Load() < int64(sent) {
		next()
	}
	b.StopTimer()
	st := p.Stats(BackendName)
	b.ReportMetric(float64(st.DroppedHWM.Load()+st.DroppedUnknownIdentity.Load())/float64(b.N), "dropped/op")
}
