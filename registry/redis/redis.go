// Package redis is oslo.messaging's Redis matchmaker, written as that
// driver writes and reads it, so that zmq-proxy and the services of an
// oslo.messaging deployment find each other in the same Redis
// (docs/protocol.md, "The Redis matchmaker").
//
// Every key is a Redis SET. Registering member under key with TTL t is
//
//	SADD key member; EXPIRE key t; SADD member " "; EXPIRE member t
//
// the last two being the member's own liveness set. A reader keeps only the
// members whose liveness set still exists (TTL member >= -1). Unregistering
// is SREM key member; SREM member " ".
//
// A Matchmaker does those three operations for any key: a proxy's
// PUBLISHERS and ROUTERS, a service's DEALER/<topic> and
// DEALER/<topic>/<server> (TopicKey, ServerKey). A Registrar keeps a
// fixed set of registrations written, rewriting them every update interval
// and again as soon as Redis is back after an outage; Follow tells a reader
// the live members of a key as they change.
package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Keys of the proxies' registrations, as oslo.messaging names them.
const (
	// PublishersKey holds one member per central proxy:
	// "<publisher host:port>,<frontend host:port>".
	PublishersKey = "PUBLISHERS"
	// RoutersKey holds one member per central proxy: its backend
	// "host:port" (a single-router proxy's frontend).
	RoutersKey = "ROUTERS"
)

// TopicKey is the key under which oslo.messaging's servers of topic
// register their DEALER identities: "DEALER/<topic>".
func TopicKey(topic string) string { return "DEALER/" + topic }

// ServerKey is the key of one server of topic: "DEALER/<topic>/<server>",
// the server name cut at its first "@" as oslo.messaging cuts it.
func ServerKey(topic, server string) string {
	server, _, _ = strings.Cut(server, "@")
	return "DEALER/" + topic + "/" + server
}

// aliveMark is the one member of a liveness set.
const aliveMark = " "

// Defaults, oslo.messaging's [matchmaker_redis] ones.
const (
	DefaultHost = "127.0.0.1"
	DefaultPort = 6379
)

var (
	// ErrBadURL: a URL that is not zmq+redis://[:password@]host:port[/db].
	ErrBadURL = errors.New("bad redis url")
	// ErrBadTTL: a registration with a TTL under one second.
	ErrBadTTL = errors.New("ttl under one second")
)

// Config says how to reach Redis.
type Config struct {
	Addr     string // host:port; default 127.0.0.1:6379
	Password string // AUTH password; "" = none
	DB       int    // database number
	// Timeout bounds dialling and each command; default 2 s.
	Timeout time.Duration
	// Logger; nil = slog.Default().
	Logger *slog.Logger
}

// ParseURL parses zmq+redis://[:password@]host:port[/db]. A part left out
// of the URL is left empty in the Config (host, port) or zero (db), so
// that the caller can fill it from oslo's [matchmaker_redis] section.
func ParseURL(s string) (host string, port int, password string, db int, err error) {
	u, err := url.Parse(s)
	if err != nil || !strings.EqualFold(u.Scheme, "zmq+redis") {
		return "", 0, "", 0, fmt.Errorf("%w: want zmq+redis://[:password@]host:port[/db]", ErrBadURL)
	}
	if u.RawQuery != "" || u.Fragment != "" || strings.Contains(u.Host, ",") {
		return "", 0, "", 0, fmt.Errorf("%w: want one host, no query: zmq+redis://[:password@]host:port[/db]", ErrBadURL)
	}
	if u.User != nil {
		password, _ = u.User.Password()
		if password == "" {
			password = u.User.Username() // zmq+redis://password@host
		}
	}
	host = u.Hostname()
	if p := u.Port(); p != "" {
		port, err = strconv.Atoi(p)
		if err != nil || port < 1 || port > 65535 {
			return "", 0, "", 0, fmt.Errorf("%w: port %q is not in 1..65535", ErrBadURL, p)
		}
	}
	if path := strings.Trim(u.Path, "/"); path != "" {
		db, err = strconv.Atoi(path)
		if err != nil || db < 0 {
			return "", 0, "", 0, fmt.Errorf("%w: database %q is not a number", ErrBadURL, path)
		}
	}
	return host, port, password, db, nil
}

// go-redis logs each failed dial on its own, with the standard log
// package; an outage would fill the log. Its lines go to the last
// Matchmaker's logger at debug level instead: the Registrar and Follow log
// an outage once.
var (
	clientLog       atomic.Pointer[slog.Logger]
	setClientLogger sync.Once
)

type clientLogging struct{}

func (clientLogging) Printf(ctx context.Context, format string, v ...any) {
	if l := clientLog.Load(); l != nil {
		l.DebugContext(ctx, "redis client", "detail", fmt.Sprintf(format, v...))
	}
}

// Matchmaker reads and writes oslo.messaging's matchmaker records. It is
// safe for concurrent use.
type Matchmaker struct {
	cli     *goredis.Client
	timeout time.Duration
	log     *slog.Logger
	addr    string
}

// New returns a Matchmaker for cfg. It does not connect: the first command
// does, and each command reconnects as needed, so Redis may come and go.
func New(cfg Config) *Matchmaker {
	if cfg.Addr == "" {
		cfg.Addr = net.JoinHostPort(DefaultHost, strconv.Itoa(DefaultPort))
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	clientLog.Store(cfg.Logger)
	setClientLogger.Do(func() { goredis.SetLogger(clientLogging{}) })
	cli := goredis.NewClient(&goredis.Options{
		Addr:         cfg.Addr,
		Password:     cfg.Password,
		DB:           cfg.DB,
		DialTimeout:  cfg.Timeout,
		ReadTimeout:  cfg.Timeout,
		WriteTimeout: cfg.Timeout,
		// The Registrar and Follow retry on their own schedule; a command
		// fails at once rather than retrying behind their backs.
		MaxRetries: -1,
		// Plain RESP2: no HELLO, which an older Redis refuses.
		Protocol:        2,
		DisableIdentity: true,
	})
	return &Matchmaker{cli: cli, timeout: cfg.Timeout, log: cfg.Logger, addr: cfg.Addr}
}

// Addr is the Redis address, host:port.
func (m *Matchmaker) Addr() string { return m.addr }

// Close closes the connections to Redis.
func (m *Matchmaker) Close() error { return m.cli.Close() }

// Ping checks that Redis answers (and accepts the password).
func (m *Matchmaker) Ping(ctx context.Context) error { return m.cli.Ping(ctx).Err() }

// Register adds member to the set key and writes member's liveness set,
// both expiring after ttl (whole seconds, at least one):
// SADD key member, EXPIRE key ttl, SADD member " ", EXPIRE member ttl,
// in one round trip.
func (m *Matchmaker) Register(ctx context.Context, key, member string, ttl time.Duration) error {
	if ttl < time.Second {
		return fmt.Errorf("register %s in %s: %w", member, key, ErrBadTTL)
	}
	secs := ttl.Truncate(time.Second)
	_, err := m.cli.Pipelined(ctx, func(p goredis.Pipeliner) error {
		p.SAdd(ctx, key, member)
		p.Expire(ctx, key, secs)
		p.SAdd(ctx, member, aliveMark)
		p.Expire(ctx, member, secs)
		return nil
	})
	if err != nil {
		return fmt.Errorf("register %s in %s: %w", member, key, err)
	}
	return nil
}

// present reports whether member is in the set key and its liveness set
// exists (SISMEMBER key member, EXISTS member, in one round trip).
func (m *Matchmaker) present(ctx context.Context, key, member string) (bool, error) {
	var in *goredis.BoolCmd
	var alive *goredis.IntCmd
	_, err := m.cli.Pipelined(ctx, func(p goredis.Pipeliner) error {
		in = p.SIsMember(ctx, key, member)
		alive = p.Exists(ctx, member)
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("check %s in %s: %w", member, key, err)
	}
	return in.Val() && alive.Val() == 1, nil
}

// Unregister removes member from the set key and empties its liveness set
// (Redis deletes an empty set): SREM key member, SREM member " ".
func (m *Matchmaker) Unregister(ctx context.Context, key, member string) error {
	_, err := m.cli.Pipelined(ctx, func(p goredis.Pipeliner) error {
		p.SRem(ctx, key, member)
		p.SRem(ctx, member, aliveMark)
		return nil
	})
	if err != nil {
		return fmt.Errorf("unregister %s from %s: %w", member, key, err)
	}
	return nil
}

// LiveMembers returns the members of the set key whose liveness set
// exists, sorted: oslo's reader keeps a member when TTL member >= -1.
func (m *Matchmaker) LiveMembers(ctx context.Context, key string) ([]string, error) {
	members, err := m.cli.SMembers(ctx, key).Result()
	if err != nil {
		return nil, fmt.Errorf("members of %s: %w", key, err)
	}
	if len(members) == 0 {
		return nil, nil
	}
	ttls := make([]*goredis.DurationCmd, len(members))
	_, err = m.cli.Pipelined(ctx, func(p goredis.Pipeliner) error {
		for i, mem := range members {
			ttls[i] = p.TTL(ctx, mem)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("liveness of the members of %s: %w", key, err)
	}
	live := members[:0]
	for i, mem := range members {
		// go-redis returns TTL's -1 (no expiry) and -2 (no key) as those
		// very Durations, not as seconds.
		if ttls[i].Val() != -2 {
			live = append(live, mem)
		}
	}
	slices.Sort(live)
	return live, nil
}

// Follow calls fn with the live members of key at once, then every time
// they change, reading them every interval, until ctx is done. Redis being
// down does not stop it: the outage is logged once, fn is not called
// (the last members it was given stand), and it reads again at the next
// interval. It returns ctx's error.
func (m *Matchmaker) Follow(ctx context.Context, key string, every time.Duration, fn func(members []string)) error {
	var last []string
	first, down := true, false
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, m.timeout)
		live, err := m.LiveMembers(rctx, key)
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil:
			if !down {
				m.log.Warn("redis unreachable, reading again every interval", "redis", m.addr, "key", key,
					"interval", every, "err", err)
				down = true
			}
		default:
			if down {
				m.log.Info("redis reachable again", "redis", m.addr, "key", key)
				down = false
			}
			if first || !slices.Equal(live, last) {
				first, last = false, live
				fn(slices.Clone(live))
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}
