package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// DefaultTTL is the lease TTL: a proxy that dies without a word is gone
// from the registry within this long. The client keeps the lease alive
// every TTL/3, so 5 s costs one small request every ~1.7 s per proxy and
// lets clients stop sending to a dead proxy within seconds (oslo.messaging's
// 300 s left them sending into the void for five minutes).
const DefaultTTL = 5 * time.Second

// Config configures a Registrar.
type Config struct {
	Client *clientv3.Client
	// Prefix of the keys; default DefaultPrefix.
	Prefix string
	// TTL of the lease; default DefaultTTL. etcd rounds it to seconds.
	TTL time.Duration
	// RetryMin and RetryMax bound the backoff while etcd does not answer;
	// default 100 ms to 1 s, so that a proxy registers again within about a
	// second of etcd coming back.
	RetryMin, RetryMax time.Duration
	// Logger; nil = slog.Default().
	Logger *slog.Logger
}

func (c *Config) setDefaults() error {
	if c.Client == nil {
		return errors.New("registry: no etcd client")
	}
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.TTL <= 0 {
		c.TTL = DefaultTTL
	}
	if c.TTL < time.Second {
		c.TTL = time.Second
	}
	if c.RetryMin <= 0 {
		c.RetryMin = 100 * time.Millisecond
	}
	if c.RetryMax < c.RetryMin {
		c.RetryMax = max(time.Second, c.RetryMin)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// Registrar keeps one record registered under a lease, modelled on etcd's
// concurrency.Session: a lease is granted, kept alive (the keep-alive
// channel is always drained) and revoked on Close. When the lease is lost
// (etcd restarted without its data, a partition longer than the TTL), a new
// lease is granted and the record put again as soon as etcd answers;
// meanwhile the proxy goes on routing. One goroutine does all of it.
type Registrar struct {
	cfg Config
	log *slog.Logger
	key string // fixed: the record's ID does not change (the first target's key for targets)

	mu         sync.Mutex
	rec        Record   // a proxy's record, or
	targets    []Target // a server's targets, all on one lease
	registered bool
	lease      clientv3.LeaseID // the current lease, while registered
	lost       chan struct{}    // closed when the current lease is lost; renewed at each registration
	first      chan struct{}    // closed at the first registration
	update     chan struct{}    // cap 1: the record changed

	cancel context.CancelFunc
	done   chan struct{}
	once   sync.Once
}

// NewRegistrar starts registering rec. It returns at once; Registered
// reports when the record is in etcd.
func NewRegistrar(cfg Config, rec Record) (*Registrar, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if err := rec.Validate(); err != nil {
		return nil, err
	}
	return start(cfg, Key(cfg.Prefix, rec.ID), rec, nil), nil
}

// NewTargetRegistrar starts registering a server's targets, all under one
// lease: they appear together, and vanish together when Close revokes the
// lease or the server dies and the lease expires.
func NewTargetRegistrar(cfg Config, targets ...Target) (*Registrar, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if len(targets) == 0 {
		return nil, fmt.Errorf("%w: no target to register", ErrBadRecord)
	}
	for _, t := range targets {
		if err := t.Validate(); err != nil {
			return nil, err
		}
	}
	return start(cfg, TargetKey(cfg.Prefix, targets[0].Target, targets[0].Identity), Record{}, targets), nil
}

func start(cfg Config, key string, rec Record, targets []Target) *Registrar {
	ctx, cancel := context.WithCancel(context.Background())
	r := &Registrar{
		cfg:     cfg,
		log:     cfg.Logger,
		key:     key,
		rec:     rec,
		targets: targets,
		lost:    make(chan struct{}),
		first:   make(chan struct{}),
		update:  make(chan struct{}, 1),
		cancel:  cancel,
		done:    make(chan struct{}),
	}
	go r.run(ctx)
	return r
}

// Key is the record's etcd key (for targets, the first target's).
func (r *Registrar) Key() string { return r.key }

// Update replaces a proxy's record (same ID); it is put on the current
// lease.
func (r *Registrar) Update(rec Record) error {
	if r.targets != nil {
		return fmt.Errorf("%w: Update of a target registration", ErrBadRecord)
	}
	if err := rec.Validate(); err != nil {
		return err
	}
	r.mu.Lock()
	rec.ID = r.rec.ID
	r.rec = rec
	r.mu.Unlock()
	select {
	case r.update <- struct{}{}:
	default:
	}
	return nil
}

// UpdateTargets replaces a server's targets (same keys: the target and
// identity of each must not change; a server marks them Draining before it
// stops) and puts them on the current lease before it returns, so that
// once it returns watchers are being told. Without a live lease it only
// keeps them for the next registration, and says so with an error.
func (r *Registrar) UpdateTargets(ctx context.Context, targets ...Target) error {
	if r.targets == nil {
		return fmt.Errorf("%w: UpdateTargets of a proxy registration", ErrBadRecord)
	}
	r.mu.Lock()
	if len(targets) != len(r.targets) {
		r.mu.Unlock()
		return fmt.Errorf("%w: %d targets, registered %d", ErrBadRecord, len(targets), len(r.targets))
	}
	for i, t := range targets {
		if err := t.Validate(); err != nil {
			r.mu.Unlock()
			return err
		}
		if t.Target != r.targets[i].Target || t.Identity != r.targets[i].Identity {
			r.mu.Unlock()
			return fmt.Errorf("%w: target %s/%s is not the one registered", ErrBadRecord, t.Target, t.Identity)
		}
	}
	r.targets = append([]Target(nil), targets...)
	lease, registered := r.lease, r.registered
	r.mu.Unlock()
	if !registered {
		return errors.New("registry: not registered now; the targets are kept for the next registration")
	}
	return r.put(ctx, lease)
}

// Registered reports whether the record is in etcd under a live lease now.
func (r *Registrar) Registered() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.registered
}

// Ready returns a channel closed once the record is first registered.
func (r *Registrar) Ready() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.first == nil {
		return closedChan
	}
	return r.first
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Lost returns a channel closed when the current registration's lease is
// lost (the registrar registers again by itself).
func (r *Registrar) Lost() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lost
}

// Close revokes the lease, so the record is gone at once, and stops.
// Safe to call twice.
func (r *Registrar) Close() error {
	r.once.Do(r.cancel)
	<-r.done
	return nil
}

func (r *Registrar) run(ctx context.Context) {
	defer close(r.done)
	backoff := r.cfg.RetryMin
	failing := false
	for {
		lease, err := r.register(ctx)
		if err == nil {
			if failing {
				r.log.Info("registered again", "key", r.Key(), "lease", fmt.Sprintf("%x", lease))
			} else {
				r.log.Info("registered", "key", r.Key(), "ttl", r.cfg.TTL, "lease", fmt.Sprintf("%x", lease))
			}
			failing = false
			backoff = r.cfg.RetryMin
			err = r.keepAlive(ctx, lease)
			if ctx.Err() != nil {
				r.revoke(lease)
				return
			}
			r.setLost()
			r.log.Warn("registration lost, registering again", "key", r.Key(), "err", err)
		} else if ctx.Err() != nil {
			return
		} else if !failing {
			// Logged once per outage, not once per retry.
			failing = true
			r.log.Warn("etcd unavailable, retrying with backoff", "key", r.Key(), "err", err)
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		backoff = min(2*backoff, r.cfg.RetryMax)
	}
}

// register grants a lease and puts the record on it.
func (r *Registrar) register(ctx context.Context) (clientv3.LeaseID, error) {
	cctx, cancel := context.WithTimeout(ctx, r.cfg.TTL)
	defer cancel()
	g, err := r.cfg.Client.Grant(cctx, int64((r.cfg.TTL+time.Second-1)/time.Second))
	if err != nil {
		return 0, fmt.Errorf("grant lease: %w", err)
	}
	if err := r.put(cctx, g.ID); err != nil {
		rctx, rcancel := context.WithTimeout(context.Background(), time.Second)
		_, _ = r.cfg.Client.Revoke(rctx, g.ID)
		rcancel()
		return 0, err
	}
	r.mu.Lock()
	if !r.registered && r.first != nil {
		close(r.first)
		r.first = nil
	}
	r.registered = true
	r.lease = g.ID
	r.mu.Unlock()
	return g.ID, nil
}

func (r *Registrar) put(ctx context.Context, lease clientv3.LeaseID) error {
	r.mu.Lock()
	rec, targets := r.rec, r.targets
	r.mu.Unlock()
	var ops []clientv3.Op
	if r.targets == nil {
		v, err := rec.marshal()
		if err != nil {
			return err
		}
		ops = append(ops, clientv3.OpPut(r.key, v, clientv3.WithLease(lease)))
	}
	for _, t := range targets {
		v, err := json.Marshal(t)
		if err != nil {
			return err
		}
		ops = append(ops, clientv3.OpPut(TargetKey(r.cfg.Prefix, t.Target, t.Identity), string(v), clientv3.WithLease(lease)))
	}
	if _, err := r.cfg.Client.Txn(ctx).Then(ops...).Commit(); err != nil {
		return fmt.Errorf("put record: %w", err)
	}
	return nil
}

// keepAlive drains the lease's keep-alive responses until the lease is lost
// or ctx is done, and puts the record again when it changes.
func (r *Registrar) keepAlive(ctx context.Context, lease clientv3.LeaseID) error {
	kctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ka, err := r.cfg.Client.KeepAlive(kctx, lease)
	if err != nil {
		return fmt.Errorf("keep lease alive: %w", err)
	}
	for {
		select {
		case _, ok := <-ka:
			if !ok {
				return errors.New("lease expired or revoked")
			}
		case <-r.update:
			pctx, pcancel := context.WithTimeout(ctx, r.cfg.TTL)
			err := r.put(pctx, lease)
			pcancel()
			if err != nil && ctx.Err() == nil {
				return err
			}
		case <-ctx.Done():
			// Drain until the client closes the channel, as Session does.
			cancel()
			for range ka {
			}
			return ctx.Err()
		}
	}
}

func (r *Registrar) setLost() {
	r.mu.Lock()
	r.registered = false
	close(r.lost)
	r.lost = make(chan struct{})
	r.mu.Unlock()
}

// revoke removes the record at once on a clean shutdown.
func (r *Registrar) revoke(lease clientv3.LeaseID) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := r.cfg.Client.Revoke(ctx, lease); err != nil {
		r.log.Warn("revoke lease failed; the record expires with its TTL", "key", r.Key(), "err", err)
		return
	}
	r.mu.Lock()
	r.registered = false
	r.mu.Unlock()
	r.log.Info("deregistered", "key", r.Key())
}
