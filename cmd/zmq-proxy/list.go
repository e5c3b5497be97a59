package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/status"

	"github.com/zmq-proxy/zmq-proxy/internal/listing"
	"github.com/zmq-proxy/zmq-proxy/registry"
)

// runList is "zmq-proxy list": it prints the proxies registered in etcd and
// returns, or with --watch prints the changes too until ctx is done. It
// returns the exit code: 0 (after -h, or when ctx ends a watch), 1 when
// etcd cannot be reached or read, 2 on a bad flag or configuration.
func runList(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fail := func(code int, err error) int {
		fmt.Fprintf(stderr, "%s list: %v\n", progName, err)
		return code
	}
	c, err := resolve(cmdList, args)
	if errors.Is(err, flag.ErrHelp) {
		printUsage(stdout, cmdList)
		return 0
	}
	if err != nil {
		return fail(2, err)
	}
	logger, closeLog, err := newLogger(c, stderr)
	if err != nil {
		return fail(2, err)
	}
	defer closeLog() //nolint:errcheck // nothing is left to report it to
	c.log(logger)

	cfg, err := c.clientConfig()
	if err != nil {
		return fail(2, err)
	}
	// Dialling, authenticating and the probe share one --timeout.
	deadline := time.Now().Add(c.registryWait())
	cli, err := registry.NewClient(cfg)
	if err != nil {
		return fail(c.clientError(err))
	}
	defer cli.Close()

	if err := c.probe(ctx, cli, deadline); err != nil {
		return fail(1, err)
	}
	if err := listing.List(ctx, cli, stdout, listing.Config{
		Prefix: c.EtcdPrefix, Timeout: c.ListTimeout, Watch: c.Watch, JSON: c.JSON, Logger: logger,
		Where: strings.Join(c.endpoints(), ","), NoAnswer: c.noEtcd,
	}); err != nil {
		return fail(1, err)
	}
	return 0
}

// clientConfig says how list reaches etcd: the URL's cluster, or with no
// URL the etcd on --etcd-addr.
func (c *config) clientConfig() (registry.ClientConfig, error) {
	cfg := registry.ClientConfig{
		Username:    c.EtcdUser,
		Password:    c.EtcdPassword,
		CACert:      c.EtcdCACert,
		Cert:        c.EtcdCert,
		Key:         c.EtcdKey,
		DialTimeout: c.registryWait(),
	}
	switch c.Registry.Mode {
	case registryEtcd:
		cfg.Endpoints = c.Registry.Endpoints
	case registryEmbedded:
		cfg.Endpoints = []string{c.EtcdAddr}
	case registryRedis:
		return cfg, c.blameSetting("url", errors.New("not an etcd registry, which this command reads; "+
			"oslo.messaging's Redis matchmaker holds the PUBLISHERS and ROUTERS sets (redis-cli SMEMBERS)"))
	default:
		return cfg, c.blameSetting("url", errors.New("not a registry to list: zmq:// means none"))
	}
	return cfg, nil
}

// clientError is the exit code and the error of a failed NewClient: with a
// user name, the client authenticates at once, so etcd's silence or refusal
// shows here (1); anything else is a certificate file that is not one (2).
func (c *config) clientError(err error) (int, error) {
	var etcdErr rpctypes.EtcdError
	switch _, isStatus := status.FromError(err); {
	case errors.Is(err, context.DeadlineExceeded):
		return 1, c.noEtcd()
	case errors.As(err, &etcdErr) || isStatus:
		return 1, fmt.Errorf("etcd at %s: %w", strings.Join(c.endpoints(), ","), oneLine{err})
	}
	return 2, oneLine{err}
}

// probe asks etcd for the number of records, so that an etcd that does not
// answer by deadline, or refuses, is one clear error rather than a watcher
// retrying for ever.
func (c *config) probe(ctx context.Context, cli *clientv3.Client, deadline time.Time) error {
	pctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	_, err := cli.Get(pctx, registry.Key(c.EtcdPrefix, ""), clientv3.WithPrefix(), clientv3.WithCountOnly())
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("interrupted: %w", context.Cause(ctx))
	case pctx.Err() != nil || errors.Is(err, context.DeadlineExceeded):
		return c.noEtcd()
	}
	return fmt.Errorf("etcd at %s: %w", strings.Join(c.endpoints(), ","), oneLine{err})
}

// noEtcd is the error for an etcd that did not answer in time
// (registryWait).
func (c *config) noEtcd() error {
	if c.Registry.Mode == registryEmbedded {
		return fmt.Errorf("no etcd at %s: nothing answered within %s; start zmq-proxy first (it runs one there), or give -u",
			c.EtcdAddr, c.registryWait())
	}
	return fmt.Errorf("no etcd at %s (url from %s): nothing answered within %s",
		strings.Join(c.endpoints(), ","), c.settings["url"].from, c.registryWait())
}

// minRegistryWait is how long the client commands wait at least for the
// registry to answer, whatever their --timeout (the reply's or the ACK's):
// "call --timeout 1ms" must time out waiting for the reply, not for etcd.
const minRegistryWait = 2 * time.Second

// registryWait is how long a command waits for the registry to answer:
// list's --timeout; the client commands' --timeout, at least
// minRegistryWait.
func (c *config) registryWait() time.Duration {
	if c.cmd == cmdList {
		return c.ListTimeout
	}
	return max(c.ListTimeout, minRegistryWait)
}

func (c *config) endpoints() []string {
	if c.Registry.Mode == registryEmbedded {
		return []string{c.EtcdAddr}
	}
	return c.Registry.Endpoints
}
