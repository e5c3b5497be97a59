package registry

import (
	"context"
	"maps"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// etcdRegistry is the Registry in etcd: records under leases
// (Registrar), watched (Watcher, TargetWatcher).
type etcdRegistry struct {
	cli  *clientv3.Client
	opts Options
	// closers are what Open opened, closed last first.
	closers []func() error
	// beforeClose, if set, runs before them (an embedded etcd's watchers
	// catching up).
	beforeClose func()
}

// NewEtcd is the Registry in etcd, through cli, which it does not close.
func NewEtcd(cli *clientv3.Client, o Options) Registry {
	return &etcdRegistry{cli: cli, opts: o.withDefaults()}
}

func (e *etcdRegistry) config(o RegisterOptions) Config {
	return Config{Client: e.cli, Prefix: e.opts.Prefix, TTL: o.TTL, Logger: o.logger(e.opts.Logger)}
}

func (e *etcdRegistry) RegisterProxy(rec Record, o RegisterOptions) (Registration, error) {
	return NewRegistrar(e.config(o), rec)
}

func (e *etcdRegistry) RegisterTargets(o RegisterOptions, targets ...Target) (Registration, error) {
	return NewTargetRegistrar(e.config(o), targets...)
}

func (e *etcdRegistry) WatchProxies(ctx context.Context, o WatchOptions, fn func(map[string]Record)) error {
	w := NewWatcher(e.cli, e.opts.Prefix, o.logger(e.opts.Logger))
	proxies := make(map[string]Record)
	listed := false // the first listing reports the whole set at once
	return w.Run(ctx, func(ev Event) {
		if ev.Type == EventDelete {
			delete(proxies, ev.ID)
		} else {
			proxies[ev.ID] = ev.Record
		}
		if listed {
			fn(maps.Clone(proxies))
		}
	}, func() {
		listed = true
		fn(maps.Clone(proxies))
	})
}

func (e *etcdRegistry) WatchTargets(o WatchOptions) TargetWatch {
	return etcdTargets{NewTargetWatcher(e.cli, e.opts.Prefix, o.logger(e.opts.Logger))}
}

// etcdTargets: every target is watched already; Want has nothing to do.
type etcdTargets struct{ *TargetWatcher }

func (etcdTargets) Want(context.Context, string) error { return nil }

func (e *etcdRegistry) String() string { return "etcd at " + strings.Join(e.cli.Endpoints(), ",") }

func (e *etcdRegistry) Close() error {
	if e.beforeClose != nil {
		e.beforeClose()
		e.beforeClose = nil
	}
	err := closeAll(e.closers)
	e.closers = nil
	return err
}

// closeAll calls what Open opened, last first, and returns the first
// error.
func closeAll(closers []func() error) error {
	var err error
	for i := len(closers) - 1; i >= 0; i-- {
		if cerr := closers[i](); cerr != nil && err == nil {
			err = cerr
		}
	}
	return err
}

var _ Registration = (*Registrar)(nil)
