package redis_test

import (
	"context"
	"fmt"
	"time"

	"github.com/zmq-proxy/zmq-proxy/registry/redis"
)

// A service registers its DEALER identity under its topic and its server
// name, as oslo.messaging's services do; a client picks among the live
// identities. (Not run: it needs a Redis.)
func ExampleMatchmaker() {
	ctx := context.Background()
	m := redis.New(redis.Config{Addr: "127.0.0.1:6379"})
	defer m.Close()

	id := "node-1/compute/server-1/4f0c2a7e"
	for _, key := range []string{redis.TopicKey("compute"), redis.ServerKey("compute", "server-1@node-1")} {
		if err := m.Register(ctx, key, id, 5*time.Minute); err != nil {
			fmt.Println(err)
			return
		}
	}
	ids, err := m.LiveMembers(ctx, redis.TopicKey("compute"))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(ids)
	_ = m.Unregister(ctx, redis.TopicKey("compute"), id)
	_ = m.Unregister(ctx, redis.ServerKey("compute", "server-1@node-1"), id)
}

// A central proxy keeps its records written every zmq_target_update and
// removes them on Close.
func ExampleRegistrar() {
	m := redis.New(redis.Config{Addr: "127.0.0.1:6379"})
	defer m.Close()
	reg, err := redis.NewRegistrar(redis.RegistrarConfig{
		Matchmaker: m,
		Entries: []redis.Entry{
			{Key: redis.PublishersKey, Member: "10.0.0.1:50003,10.0.0.1:50001"},
			{Key: redis.RoutersKey, Member: "10.0.0.1:50002"},
		},
		TTL:    300 * time.Second,
		Update: 180 * time.Second,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer reg.Close()
}
