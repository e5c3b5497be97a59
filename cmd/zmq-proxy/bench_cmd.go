package main

import (
	"context"
	"fmt"
	"io"

	"github.com/zmq-proxy/zmq-proxy/internal/bench"
	"github.com/zmq-proxy/zmq-proxy/internal/config"
)

// runBench is "zmq-proxy bench call|cast|fanout": flags, registry, then
// internal/bench.
func runBench(ctx context.Context, _ string, args []string, stdout, stderr io.Writer) int {
	s, code := setupClient(ctx, config.CmdBench, "bench", args, stdout, stderr, [2]int{1, 1}, func(c *config.Config) error {
		if m := c.Args[0]; m != "call" && m != "cast" && m != "fanout" {
			return fmt.Errorf("%q is not call, cast or fanout", m)
		}
		return nil
	})
	if s == nil {
		return code
	}
	defer s.done()
	c := s.c
	return bench.Run(ctx, bench.Config{
		Mode: c.Args[0], Clients: c.BenchClients, Outstanding: c.BenchOutstanding, Servers: c.BenchServers,
		Target: c.BenchTarget, Size: c.BenchSize, Duration: c.BenchDuration, Count: c.BenchCount,
		Window: c.BenchWindow, Acks: c.Acks, JSON: c.JSON, Debug: c.Debug, Timeout: c.ListTimeout, CPUProfile: c.BenchCPUProfile,
		Client: s.clientConfig(),
	}, stdout, stderr)
}
