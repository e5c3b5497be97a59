package registry

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// Registry is where proxies and rpc servers register, and where proxies,
// clients and servers find them: etcd (NewEtcd) or oslo.messaging's Redis
// matchmaker (NewRedis); Open builds either from a configuration. Its
// methods are safe for concurrent use.
//
// Registration is modelled on etcd's concurrency.Session: it returns at
// once, keeps the records written on a goroutine of its own (through
// outages, logged once, retried with backoff), tells when they are first
// written (Ready) and when they are lost (Lost), and removes them at once
// on Close.
//
// Discovery has one shape: a first complete listing, then every change.
// etcd is watched; Redis, which has no watch, is read every Options.Poll,
// and an entry that Redis stops listing is kept for three polls (at least
// 3 s) before it is reported gone: a Redis restarted without its data lists
// nothing until everyone has written themselves again.
type Registry interface {
	// RegisterProxy keeps a proxy's record registered until the
	// Registration is closed. The Redis matchmaker has no record for a
	// local publisher proxy (KindLocal): ErrUnsupported.
	RegisterProxy(rec Record, o RegisterOptions) (Registration, error)
	// RegisterTargets keeps a server's targets registered, together,
	// until the Registration is closed.
	RegisterTargets(o RegisterOptions, targets ...Target) (Registration, error)
	// WatchProxies calls fn with every proxy's record, by ID, once the
	// first listing is complete and after every change, on its own
	// goroutine, until ctx is done; it returns ctx's error. fn owns the map.
	WatchProxies(ctx context.Context, o WatchOptions, fn func(map[string]Record)) error
	// WatchTargets follows the servers' target registrations.
	WatchTargets(o WatchOptions) TargetWatch
	// String names the registry in messages: "etcd at host:port,...",
	// "redis at host:port".
	String() string
	// Close releases what the registry opened (Open's clients, an
	// embedded etcd); a registry made by NewEtcd or NewRedis leaves the
	// caller's client open.
	Close() error
}

// Registration is one registration, kept written until Close.
type Registration interface {
	// Ready is closed once the records are first written.
	Ready() <-chan struct{}
	// Lost is closed when the current registration is lost (an etcd
	// lease expired or revoked, a Redis that failed or lost the entries);
	// the registration writes them again by itself, and Lost returns a new
	// channel from then on.
	Lost() <-chan struct{}
	// Registered reports whether the records are written now.
	Registered() bool
	// UpdateTargets replaces a server's targets (same targets and
	// identities, e.g. marked Draining) and writes them before it returns.
	// ErrUnsupported on the Redis matchmaker, which has no such mark, and
	// for a proxy's registration.
	UpdateTargets(ctx context.Context, targets ...Target) error
	// Close removes the records at once (or leaves them to expire within
	// their TTL when the registry does not answer). Safe to call twice.
	Close() error
}

// TargetWatch follows the servers' target registrations.
type TargetWatch interface {
	// Run reports every change to fn, on Run's goroutine, until ctx is
	// done; synced, if not nil, is called after each complete listing.
	Run(ctx context.Context, fn func(TargetEvent), synced func()) error
	// Want makes sure that target's registrations ("topic" or
	// "topic/server") have been reported to fn before it returns. etcd's
	// are listed already; the Redis matchmaker, which cannot list every
	// target, reads target's key the first time it is wanted (fn is then
	// called on Want's goroutine) and every poll from then on.
	Want(ctx context.Context, target string) error
}

// RegisterOptions shape one registration.
type RegisterOptions struct {
	// TTL of the records: the lease's (rounded up to seconds), or the
	// Redis keys' expiry (zmq_target_expire; truncated to seconds); at
	// least a second, default DefaultTTL.
	TTL time.Duration
	// Logger; nil = the registry's.
	Logger *slog.Logger
}

// WatchOptions shape one watch.
type WatchOptions struct {
	// Backends: the watcher connects to the proxies' backends (an rpc
	// server), not to their frontends. It changes only what the Redis
	// matchmaker reports, whose PUBLISHERS member ("<publisher>,<frontend>")
	// and ROUTERS member ("<backend>") of one proxy cannot be told to go
	// together: with Backends, ROUTERS is read too, each member a record
	// with only a Backend, and the PUBLISHERS records carry no Frontend;
	// without it, ROUTERS is not read.
	Backends bool
	// Logger; nil = the registry's.
	Logger *slog.Logger
}

// Options are a registry's own settings.
type Options struct {
	// Prefix of etcd's keys; default DefaultPrefix.
	Prefix string
	// Poll is how often the Redis matchmaker is read; default DefaultPoll.
	Poll time.Duration
	// Update is how often registrations are written again in Redis
	// (oslo's zmq_target_update); default a third of their TTL.
	Update time.Duration
	// Logger; nil = slog.Default().
	Logger *slog.Logger
}

// DefaultPoll is how often the Redis matchmaker, which cannot be watched,
// is read.
const DefaultPoll = time.Second

// ErrUnsupported: what the registry cannot do (the Redis matchmaker has no
// draining mark and no record of a local publisher proxy).
var ErrUnsupported = errors.New("not supported by this registry")

func (o Options) withDefaults() Options {
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.Poll <= 0 {
		o.Poll = DefaultPoll
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

func (o RegisterOptions) logger(def *slog.Logger) *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return def
}

func (o WatchOptions) logger(def *slog.Logger) *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return def
}
