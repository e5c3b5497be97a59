package registry

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Target is one server's registration for one target: the routing
// identity of its DEALER, stored as JSON under
// <prefix>targets/<target>/<identity> (each part path-escaped), bound to
// the server's lease. A server with a name registers twice: under its
// topic ("demo") and under topic/server ("demo/s1").
type Target struct {
	// Target is "topic" or "topic/server".
	Target string `json:"target"`
	// Identity is the server DEALER's routing identity,
	// host/topic[/server]/uuid.
	Identity string `json:"identity"`
	// Host is the server's host name.
	Host string `json:"host"`
	// Started is when the server started.
	Started time.Time `json:"started"`
	// Generation grows with every start of a server (the start time in
	// nanoseconds): of two registrations of one server (same host, topic
	// and server name), clients use the newer one and ignore the other,
	// a stale registration of a previous run that has not yet expired.
	Generation int64 `json:"generation,omitempty"`
	// Draining: the server is stopping. Clients send it nothing new, and
	// wait for what it acknowledged (it answers before it deregisters).
	Draining bool `json:"draining,omitempty"`
}

// Name is what two runs of one named server share: its host, topic and
// server name, the identity without its random part. "" for a server
// without a name, of which a host may run several.
func (t Target) Name() string {
	i := strings.LastIndexByte(t.Identity, '/')
	if i < 0 || strings.Count(t.Identity[:i], "/") < 2 {
		return ""
	}
	return t.Identity[:i]
}

// TargetKey is the etcd key of a target registration.
func TargetKey(prefix, target, identity string) string {
	return TargetPrefix(prefix) + url.PathEscape(target) + "/" + url.PathEscape(identity)
}

// TargetPrefix is where target registrations live.
func TargetPrefix(prefix string) string {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return prefix + "targets/"
}

// Validate checks a target before it is registered.
func (t Target) Validate() error {
	if t.Target == "" || strings.HasPrefix(t.Target, "/") || strings.HasSuffix(t.Target, "/") || strings.Count(t.Target, "/") > 1 {
		return fmt.Errorf("%w: target %q is not topic or topic/server", ErrBadRecord, t.Target)
	}
	if t.Identity == "" {
		return fmt.Errorf("%w: target %s has no identity", ErrBadRecord, t.Target)
	}
	return nil
}

// TargetEvent is one change of the registered targets.
type TargetEvent struct {
	Type   EventType
	Target Target // the new target for EventPut, the last known one for EventDelete
}

// TargetWatcher follows the target registrations under a prefix, as
// Watcher follows proxies: list, then watch from the listed revision, and
// list again after a compaction.
type TargetWatcher struct {
	set *watchSet[Target]
}

// NewTargetWatcher makes a watcher of the targets under prefix ("" =
// default).
func NewTargetWatcher(cli *clientv3.Client, prefix string, log *slog.Logger) *TargetWatcher {
	return &TargetWatcher{set: newWatchSet(cli, TargetPrefix(prefix), log, func(key string, v []byte) (Target, error) {
		var t Target
		if err := json.Unmarshal(v, &t); err != nil {
			return Target{}, fmt.Errorf("%w: %s: %w", ErrBadRecord, key, err)
		}
		if err := t.Validate(); err != nil {
			return Target{}, fmt.Errorf("%s: %w", key, err)
		}
		return t, nil
	})}
}

// Targets returns the targets reported so far, sorted by key. Only for use
// from fn or after Run returns.
func (w *TargetWatcher) Targets() []Target { return w.set.values() }

// Run reports every change to fn, on Run's goroutine, until ctx is done.
// synced, if not nil, is called after each complete listing.
func (w *TargetWatcher) Run(ctx context.Context, fn func(TargetEvent), synced func()) error {
	return w.set.run(ctx, func(t EventType, _ string, tg Target) {
		fn(TargetEvent{Type: t, Target: tg})
	}, synced)
}
