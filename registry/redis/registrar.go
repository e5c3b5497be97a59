package redis

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// Entry is one registration: member in the set key.
type Entry struct {
	Key, Member string
}

// RegistrarConfig configures a Registrar.
type RegistrarConfig struct {
	Matchmaker *Matchmaker
	Entries    []Entry
	// TTL of every key written (oslo's zmq_target_expire); at least 1 s.
	TTL time.Duration
	// Update is how often the entries are written again (oslo's
	// zmq_target_update); default TTL/3. It should be below TTL, or the
	// records lapse between two writes.
	Update time.Duration
	// Check is how often, between two writes, the entries are looked for
	// in Redis (default 1 s, at most Update): a Redis restarted without
	// its data, or flushed, loses them without an error, and they are
	// written again at the next check rather than at the next Update
	// (oslo.messaging's 180 s).
	Check time.Duration
	// RetryMin and RetryMax bound the backoff while Redis does not answer;
	// default 100 ms to 1 s, never more than Update: the entries are back
	// within about a second of Redis coming back.
	RetryMin, RetryMax time.Duration
	// Logger; nil = the Matchmaker's.
	Logger *slog.Logger
}

// Registrar keeps its entries written in Redis: at once, then every
// Update, and again as soon as Redis answers after an outage (logged once,
// when it starts, and once when it ends). Close unregisters them at once.
// One goroutine does all of it; Close waits for it.
type Registrar struct {
	cfg RegistrarConfig
	log *slog.Logger

	mu         sync.Mutex
	registered bool
	failures   int64 // failed writes, in all

	ready  chan struct{} // closed at the first complete write
	lost   chan struct{} // closed when the entries are lost; renewed then
	cancel context.CancelFunc
	done   chan struct{}
}

// NewRegistrar starts keeping cfg's entries registered. It returns at once;
// Registered says when they are written.
func NewRegistrar(cfg RegistrarConfig) (*Registrar, error) {
	if cfg.TTL < time.Second {
		return nil, ErrBadTTL
	}
	if cfg.Update <= 0 {
		cfg.Update = cfg.TTL / 3
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = 100 * time.Millisecond
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = time.Second
	}
	if cfg.Check <= 0 {
		cfg.Check = time.Second
	}
	cfg.Check = min(cfg.Check, cfg.Update)
	cfg.RetryMax = min(cfg.RetryMax, cfg.Update)
	cfg.RetryMin = min(cfg.RetryMin, cfg.RetryMax)
	log := cfg.Logger
	if log == nil {
		log = cfg.Matchmaker.log
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Registrar{cfg: cfg, log: log, ready: make(chan struct{}), lost: make(chan struct{}), cancel: cancel, done: make(chan struct{})}
	go r.run(ctx)
	return r, nil
}

// Ready is closed once every entry has been written the first time.
func (r *Registrar) Ready() <-chan struct{} { return r.ready }

// Registered reports whether the last write of every entry succeeded.
func (r *Registrar) Registered() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.registered
}

// Failures is the number of writes that failed (Redis down or refusing),
// since the start.
func (r *Registrar) Failures() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.failures
}

// Lost is closed when the entries are lost: a write failed after they
// were written, or they were found missing from Redis. The Registrar
// writes them again by itself; Lost returns a new channel from then on.
func (r *Registrar) Lost() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lost
}

func (r *Registrar) setRegistered(ok bool) {
	r.mu.Lock()
	if !ok {
		r.failures++
		if r.registered {
			r.loseLocked()
		}
	}
	r.registered = ok
	r.mu.Unlock()
}

// loseLocked closes Lost's channel and makes a new one; under mu.
func (r *Registrar) loseLocked() {
	close(r.lost)
	r.lost = make(chan struct{})
}

func (r *Registrar) run(ctx context.Context) {
	defer close(r.done)
	m := r.cfg.Matchmaker
	attrs := make([]any, 0, 2*len(r.cfg.Entries)+4)
	for _, e := range r.cfg.Entries {
		attrs = append(attrs, e.Key, e.Member)
	}
	attrs = append(attrs, "redis", m.addr, "ttl", r.cfg.TTL)
	down, ever := false, false
	retry := r.cfg.RetryMin
	timer := time.NewTimer(0)
	defer timer.Stop()
	var written time.Time // the last complete write
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		if ever && !down && time.Since(written) < r.cfg.Update {
			// Between two writes: are the entries still there?
			missing, err := r.missing(ctx)
			if ctx.Err() != nil {
				return
			}
			if err == nil && !missing {
				timer.Reset(min(r.cfg.Check, r.cfg.Update-time.Since(written)))
				continue
			}
			if err == nil {
				r.log.Info("registrations missing from redis (restarted without its data?): writing them again", attrs...)
				r.mu.Lock()
				r.loseLocked()
				r.mu.Unlock()
			}
		}
		err := r.writeAll(ctx)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			r.setRegistered(false)
			if !down {
				r.log.Warn("redis unreachable, registering again as soon as it answers", "redis", m.addr, "err", err)
				down = true
			}
			timer.Reset(retry)
			retry = min(2*retry, r.cfg.RetryMax)
			continue
		case down:
			r.log.Info("registered in redis again", attrs...)
		case !ever:
			r.log.Info("registered in redis", attrs...)
			close(r.ready)
		}
		down, ever = false, true
		retry = r.cfg.RetryMin
		r.setRegistered(true)
		written = time.Now()
		timer.Reset(r.cfg.Check)
	}
}

// missing reports whether an entry is no longer in Redis.
func (r *Registrar) missing(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Matchmaker.timeout)
	defer cancel()
	for _, e := range r.cfg.Entries {
		ok, err := r.cfg.Matchmaker.present(ctx, e.Key, e.Member)
		if err != nil || !ok {
			return !ok, err
		}
	}
	return false, nil
}

// writeAll registers every entry, within one Update at most.
func (r *Registrar) writeAll(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, max(r.cfg.Update, r.cfg.Matchmaker.timeout))
	defer cancel()
	for _, e := range r.cfg.Entries {
		if err := r.cfg.Matchmaker.Register(ctx, e.Key, e.Member, r.cfg.TTL); err != nil {
			return err
		}
	}
	return nil
}

// Close stops the rewriting, then unregisters every entry at once (a
// failure is logged: the entries then expire within the TTL). Safe to call
// more than once.
func (r *Registrar) Close() error {
	if r.cancel == nil {
		return nil
	}
	r.cancel()
	<-r.done
	r.cancel = nil
	m := r.cfg.Matchmaker
	ctx, cancel := context.WithTimeout(context.Background(), m.timeout)
	defer cancel()
	var err error
	for _, e := range r.cfg.Entries {
		if err = m.Unregister(ctx, e.Key, e.Member); err != nil {
			break
		}
	}
	r.mu.Lock()
	r.registered = false
	r.mu.Unlock()
	if err != nil {
		r.log.Warn("unregister from redis failed; the records expire within their ttl", "redis", m.addr,
			"ttl", r.cfg.TTL, "err", err)
		return nil
	}
	r.log.Info("unregistered from redis", "redis", m.addr)
	return nil
}
