package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/zmq-proxy/zmq-proxy/internal/config"
	"github.com/zmq-proxy/zmq-proxy/registry"
	redismm "github.com/zmq-proxy/zmq-proxy/registry/redis"
	"github.com/zmq-proxy/zmq-proxy/rpc"
)

// The client commands use the rpc package as a service would. Exit
// status, as for every command (exitStatusText): 0 done; 1 failed while
// running (etcd or Redis unreachable, no proxy, no server, timeout); 2 bad
// flag, argument or configuration; 3 the server raised a failure (call).

// clientSetup resolves the configuration of a client command, starts its
// logger and its registry. done releases them.
type clientSetup struct {
	c      *config.Config
	log    *slog.Logger
	reg    registry.Registry // etcd, or oslo.messaging's Redis matchmaker (-u zmq+redis://)
	closer []func() error
}

func (s *clientSetup) done() {
	for i := len(s.closer) - 1; i >= 0; i-- {
		_ = s.closer[i]()
	}
}

// setupClient returns the exit code to stop with (0 for -h) when it
// cannot go on, after saying why on stderr.
func setupClient(ctx context.Context, cmd config.Command, name string, args []string, stdout, stderr io.Writer, nargs [2]int, check func(*config.Config) error) (*clientSetup, int) {
	fail := func(code int, err error) (*clientSetup, int) {
		fmt.Fprintf(stderr, "%s %s: %v\n", config.ProgName, name, err)
		return nil, code
	}
	c, err := config.Resolve(cmd, args)
	if errors.Is(err, flag.ErrHelp) {
		config.PrintClientUsage(stdout, name)
		return nil, 0
	}
	if err != nil {
		return fail(2, err)
	}
	if n := len(c.Args); n < nargs[0] || n > nargs[1] {
		return fail(2, fmt.Errorf("%d arguments, want %s (see %s %s -h)", n, config.ClientUsage[name].Args, config.ProgName, name))
	}
	if check != nil {
		if err := check(c); err != nil {
			return fail(2, err)
		}
	}
	s := &clientSetup{c: c}
	var closeLog func() error
	if s.log, closeLog, err = config.NewLogger(c, stderr); err != nil {
		return fail(2, err)
	}
	s.closer = append(s.closer, closeLog)
	c.Log(s.log)
	if c.Registry.Mode == config.RegistryRedis {
		mm := redismm.New(redismm.Config{Addr: c.Registry.RedisAddr, Password: c.Registry.RedisPassword,
			DB: c.Registry.RedisDB, Timeout: c.ListTimeout, Logger: s.log})
		s.closer = append(s.closer, mm.Close)
		s.reg = registry.NewRedis(mm, registry.Options{Logger: s.log})
		pctx, cancel := context.WithTimeout(ctx, c.RegistryWait())
		defer cancel()
		if err := mm.Ping(pctx); err != nil {
			s.done()
			return fail(1, fmt.Errorf("redis at %s: %w", c.Registry.RedisAddr, err))
		}
		return s, -1
	}
	cfg, err := c.EtcdClientConfig()
	if err != nil {
		s.done()
		return fail(2, err)
	}
	cli, err := registry.NewClient(cfg)
	if err != nil {
		s.done()
		code, err := c.ClientError(err)
		return fail(code, err)
	}
	s.closer = append(s.closer, cli.Close)
	s.reg = registry.NewEtcd(cli, registry.Options{Prefix: c.EtcdPrefix, Logger: s.log})
	if err := c.Probe(ctx, cli, time.Now().Add(c.RegistryWait())); err != nil {
		s.done()
		return fail(1, err)
	}
	return s, -1
}

func (s *clientSetup) clientConfig() rpc.ClientConfig {
	return rpc.ClientConfig{Registry: s.reg, Host: s.c.Name, Acks: s.c.Acks,
		AckTimeout: s.c.AckTimeout, Retries: s.c.Retries, Logger: s.log}
}
