package registry

import (
	"context"
	"errors"
	"log/slog"
	"sort"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// EventType says whether a record appeared (or changed) or went away.
type EventType int

const (
	// EventPut: a record was registered or changed.
	EventPut EventType = iota
	// EventDelete: a record is gone (revoked, expired or deleted).
	EventDelete
)

func (t EventType) String() string {
	if t == EventDelete {
		return "delete"
	}
	return "put"
}

// Event is one change of the registered set.
type Event struct {
	Type   EventType
	ID     string
	Record Record // the new record for EventPut, the last known one for EventDelete
}

// Watcher follows the proxy records under a prefix: it lists them, then
// watches from the listed revision, so no change is missed. When the watch
// falls behind a compaction (or breaks), it lists again and reports the
// difference with what it had reported, so no change is reported twice.
type Watcher struct {
	set *watchSet[Record]
}

// NewWatcher makes a watcher of the proxy records under prefix ("" =
// default).
func NewWatcher(cli *clientv3.Client, prefix string, log *slog.Logger) *Watcher {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return &Watcher{set: newWatchSet(cli, prefix+"proxies/", log, func(key string, v []byte) (Record, error) {
		return unmarshalRecord(key, v)
	})}
}

// Records returns the records reported so far, sorted by ID. Only for use
// from fn or after Run returns.
func (w *Watcher) Records() []Record { return w.set.values() }

// Run reports every change to fn, on Run's goroutine, until ctx is done.
// The first calls describe the records present at the start. synced, if
// not nil, is called after each complete listing (the set is then exact).
func (w *Watcher) Run(ctx context.Context, fn func(Event), synced func()) error {
	return w.set.run(ctx, func(t EventType, id string, rec Record) {
		fn(Event{Type: t, ID: id, Record: rec})
	}, synced)
}

// watchSet is the list-then-watch loop over the keys under one prefix,
// each decoded into a T; what follows the prefix is the entry's id.
type watchSet[T any] struct {
	cli       *clientv3.Client
	keyPrefix string
	log       *slog.Logger
	decode    func(key string, v []byte) (T, error)
	known     map[string]known[T] // id -> what was last reported
}

type known[T any] struct {
	val T
	mod int64
}

func newWatchSet[T any](cli *clientv3.Client, keyPrefix string, log *slog.Logger, decode func(string, []byte) (T, error)) *watchSet[T] {
	if log == nil {
		log = slog.Default()
	}
	return &watchSet[T]{cli: cli, keyPrefix: keyPrefix, log: log, decode: decode, known: make(map[string]known[T])}
}

// values returns what was reported so far, sorted by id.
func (w *watchSet[T]) values() []T {
	ids := make([]string, 0, len(w.known))
	for id := range w.known {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	out := make([]T, 0, len(ids))
	for _, id := range ids {
		out = append(out, w.known[id].val)
	}
	return out
}

func (w *watchSet[T]) run(ctx context.Context, fn func(EventType, string, T), synced func()) error {
	backoff := 100 * time.Millisecond
	var failing time.Time // when listing began to fail; zero while it works
	for {
		rev, err := w.list(ctx, fn)
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil && failing.IsZero():
			// Once per outage; the retries after it are at debug level.
			failing = time.Now()
			w.log.Warn("registry listing failed, retrying with backoff", "prefix", w.keyPrefix, "err", err)
		case err != nil:
			w.log.Debug("registry listing failed again", "prefix", w.keyPrefix, "err", err)
		default:
			if !failing.IsZero() {
				w.log.Info("registry listing works again", "prefix", w.keyPrefix, "after", time.Since(failing).Round(time.Millisecond))
				failing = time.Time{}
			}
			if synced != nil {
				synced()
			}
			backoff = 100 * time.Millisecond
			err = w.watch(ctx, rev, fn)
			if ctx.Err() != nil {
				return ctx.Err()
			}
			w.log.Debug("registry watch restarting", "prefix", w.keyPrefix, "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// list reads the whole prefix and reports the difference with what is
// known. It returns the revision the listing is at.
func (w *watchSet[T]) list(ctx context.Context, fn func(EventType, string, T)) (int64, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := w.cli.Get(cctx, w.keyPrefix, clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	seen := make(map[string]bool, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if id := w.apply(kv, fn); id != "" {
			seen[id] = true
		}
	}
	for id, k := range w.known {
		if !seen[id] {
			delete(w.known, id)
			fn(EventDelete, id, k.val)
		}
	}
	return resp.Header.Revision, nil
}

// apply reports a put if it is news, and returns the entry's id.
func (w *watchSet[T]) apply(kv *mvccpb.KeyValue, fn func(EventType, string, T)) string {
	id, ok := strings.CutPrefix(string(kv.Key), w.keyPrefix)
	if !ok || id == "" {
		return ""
	}
	if k, ok := w.known[id]; ok && k.mod == kv.ModRevision {
		return id
	}
	val, err := w.decode(string(kv.Key), kv.Value)
	if err != nil {
		w.log.Warn("registry record ignored", "key", string(kv.Key), "err", err)
		return ""
	}
	w.known[id] = known[T]{val: val, mod: kv.ModRevision}
	fn(EventPut, id, val)
	return id
}

// watch follows changes after rev until the watch ends; a compaction or a
// cancelled watch is returned as an error so that run lists again.
func (w *watchSet[T]) watch(ctx context.Context, rev int64, fn func(EventType, string, T)) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := w.cli.Watch(wctx, w.keyPrefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	for resp := range wch {
		if err := resp.Err(); err != nil {
			if errors.Is(err, rpctypes.ErrCompacted) || resp.CompactRevision != 0 {
				w.log.Info("registry watch fell behind a compaction, listing again", "prefix", w.keyPrefix)
			}
			return err
		}
		for _, ev := range resp.Events {
			switch ev.Type {
			case clientv3.EventTypePut:
				w.apply(ev.Kv, fn)
			case clientv3.EventTypeDelete:
				id, _ := strings.CutPrefix(string(ev.Kv.Key), w.keyPrefix)
				if k, ok := w.known[id]; ok {
					delete(w.known, id)
					fn(EventDelete, id, k.val)
				}
			}
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return errors.New("watch channel closed")
}
