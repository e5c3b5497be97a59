package registry

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/zmq-proxy/zmq-proxy/internal/etcdserver"
	redismm "github.com/zmq-proxy/zmq-proxy/registry/redis"
)

// OpenConfig says which registry Open makes: the Redis matchmaker when
// Redis.Addr is set, else etcd: the cluster at Etcd.Endpoints, or, with no
// endpoint, the etcd answering on EmbeddedAddr or an embedded one started
// there, its data in EmbeddedDataDir.
type OpenConfig struct {
	Etcd            ClientConfig
	EmbeddedAddr    string
	EmbeddedDataDir string
	Redis           redismm.Config
	Options
}

// Open makes the registry cfg names; its Close closes what Open opened.
// The Redis matchmaker is not dialled (its registrations and watches do,
// and go on while Redis is down); etcd is waited for as NewClient waits
// (not at all with Etcd.Background).
func Open(ctx context.Context, cfg OpenConfig) (Registry, error) {
	o := cfg.Options.withDefaults()
	if cfg.Redis.Addr != "" {
		rc := cfg.Redis
		if rc.Logger == nil {
			rc.Logger = o.Logger
		}
		mm := redismm.New(rc)
		o.Logger.Info("registry: redis matchmaker", "redis", rc.Addr, "db", rc.DB)
		return &redisRegistry{mm: mm, opts: o, closers: []func() error{mm.Close}}, nil
	}
	e := &etcdRegistry{opts: o}
	ec := cfg.Etcd
	if len(ec.Endpoints) == 0 {
		eps, srv, err := etcdserver.Local(ctx, etcdserver.Options{ClientAddr: cfg.EmbeddedAddr, DataDir: cfg.EmbeddedDataDir, Logger: o.Logger})
		if err != nil {
			return nil, err
		}
		ec.Endpoints = eps
		if srv != nil {
			e.closers = append(e.closers, func() error {
				if err := srv.Close(); err != nil {
					return fmt.Errorf("stop embedded etcd: %w", err)
				}
				return nil
			})
			e.beforeClose = e.letWatchersCatchUp
		}
	}
	cli, err := NewClient(ec)
	if err != nil {
		e.beforeClose = nil // nothing to catch up with
		e.Close()
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	e.cli = cli
	e.closers = append(e.closers, cli.Close)
	return e, nil
}

// letWatchersCatchUp waits, a second at most, until the embedded etcd's
// watch machinery has sent everything up to the current revision: a watch
// of this process asks for a progress notification, which etcd sends once
// the stream has caught up; the other synced watchers (a "zmq-proxy list
// -w", a local proxy) are notified of the same events in the same pass.
// They must see the records of this process go before the etcd that held
// them goes.
func (e *etcdRegistry) letWatchersCatchUp() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	resp, err := e.cli.Get(ctx, Key(e.opts.Prefix, ""), clientv3.WithCountOnly())
	if err != nil {
		return
	}
	wctx := clientv3.WithRequireLeader(ctx) // the stream RequestProgress asks on
	wch := e.cli.Watch(wctx, Key(e.opts.Prefix, ""), clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
	if err := e.cli.RequestProgress(wctx); err != nil {
		return
	}
	for wr := range wch {
		if wr.IsProgressNotify() || wr.Err() != nil {
			return
		}
	}
}
