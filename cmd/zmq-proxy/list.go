package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/zmq-proxy/zmq-proxy/internal/config"
	"github.com/zmq-proxy/zmq-proxy/internal/listing"
	"github.com/zmq-proxy/zmq-proxy/registry"
)

// runList is "zmq-proxy list": it prints the proxies registered in etcd and
// returns, or with --watch prints the changes too until ctx is done. It
// returns the exit code: 0 (after -h, or when ctx ends a watch), 1 when
// etcd cannot be reached or read, 2 on a bad flag or configuration.
func runList(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fail := func(code int, err error) int {
		fmt.Fprintf(stderr, "%s list: %v\n", config.ProgName, err)
		return code
	}
	c, err := config.Resolve(config.CmdList, args)
	if errors.Is(err, flag.ErrHelp) {
		config.PrintUsage(stdout, config.CmdList)
		return 0
	}
	if err != nil {
		return fail(2, err)
	}
	logger, closeLog, err := config.NewLogger(c, stderr)
	if err != nil {
		return fail(2, err)
	}
	defer closeLog() //nolint:errcheck // nothing is left to report it to
	c.Log(logger)

	cfg, err := c.EtcdClientConfig()
	if err != nil {
		return fail(2, err)
	}
	// Dialling, authenticating and the probe share one --timeout.
	deadline := time.Now().Add(c.RegistryWait())
	cli, err := registry.NewClient(cfg)
	if err != nil {
		return fail(c.ClientError(err))
	}
	defer cli.Close()

	if err := c.Probe(ctx, cli, deadline); err != nil {
		return fail(1, err)
	}
	if err := listing.List(ctx, cli, stdout, listing.Config{
		Prefix: c.EtcdPrefix, Timeout: c.ListTimeout, Watch: c.Watch, JSON: c.JSON, Logger: logger,
		Where: strings.Join(c.Endpoints(), ","), NoAnswer: c.NoEtcd,
	}); err != nil {
		return fail(1, err)
	}
	return 0
}
