package registry

import (
	"context"
	"errors"
	"log/slog"
	"sort"
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

// Watcher follows the records under a prefix: it lists them, then watches
// from the listed revision, so no change is missed. When the watch falls
// behind a compaction (or breaks), it lists again and reports the
// difference with what it had reported, so no change is reported twice.
type Watcher struct {
	cli    *clientv3.Client
	prefix string
	log    *slog.Logger
	known  map[string]known // id -> what was last reported
}

type known struct {
	rec Record
	mod int64
}

// NewWatcher makes a watcher of the records under prefix ("" = default).
func NewWatcher(cli *clientv3.Client, prefix string, log *slog.Logger) *Watcher {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if log == nil {
		log = slog.Default()
	}
	return &Watcher{cli: cli, prefix: prefix, log: log, known: make(map[string]known)}
}

// Records returns the records reported so far, sorted by ID. Only for use
// from fn or after Run returns.
func (w *Watcher) Records() []Record {
	out := make([]Record, 0, len(w.known))
	for _, k := range w.known {
		out = append(out, k.rec)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Run reports every change to fn, on Run's goroutine, until ctx is done.
// The first calls describe the records present at the start. synced, if
// not nil, is called after each complete listing (the set is then exact).
func (w *Watcher) Run(ctx context.Context, fn func(Event), synced func()) error {
	backoff := 100 * time.Millisecond
	for {
		rev, err := w.list(ctx, fn)
		if err == nil {
			if synced != nil {
				synced()
			}
			backoff = 100 * time.Millisecond
			err = w.watch(ctx, rev, fn)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		w.log.Debug("registry watch restarting", "prefix", w.prefix, "err", err)
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
func (w *Watcher) list(ctx context.Context, fn func(Event)) (int64, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := w.cli.Get(cctx, w.prefix+"proxies/", clientv3.WithPrefix())
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
			fn(Event{Type: EventDelete, ID: id, Record: k.rec})
		}
	}
	return resp.Header.Revision, nil
}

// apply reports a put if it is news, and returns the record's id.
func (w *Watcher) apply(kv *mvccpb.KeyValue, fn func(Event)) string {
	id := IDFromKey(w.prefix, string(kv.Key))
	if id == "" {
		return ""
	}
	if k, ok := w.known[id]; ok && k.mod == kv.ModRevision {
		return id
	}
	rec, err := unmarshalRecord(string(kv.Key), kv.Value)
	if err != nil {
		w.log.Warn("registry record ignored", "key", string(kv.Key), "err", err)
		return ""
	}
	w.known[id] = known{rec: rec, mod: kv.ModRevision}
	fn(Event{Type: EventPut, ID: id, Record: rec})
	return id
}

// watch follows changes after rev until the watch ends; a compaction or a
// cancelled watch is returned as an error so that Run lists again.
func (w *Watcher) watch(ctx context.Context, rev int64, fn func(Event)) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := w.cli.Watch(wctx, w.prefix+"proxies/", clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	for resp := range wch {
		if err := resp.Err(); err != nil {
			if errors.Is(err, rpctypes.ErrCompacted) || resp.CompactRevision != 0 {
				w.log.Info("registry watch fell behind a compaction, listing again", "prefix", w.prefix)
			}
			return err
		}
		for _, ev := range resp.Events {
			switch ev.Type {
			case clientv3.EventTypePut:
				w.apply(ev.Kv, fn)
			case clientv3.EventTypeDelete:
				id := IDFromKey(w.prefix, string(ev.Kv.Key))
				if k, ok := w.known[id]; ok {
					delete(w.known, id)
					fn(Event{Type: EventDelete, ID: id, Record: k.rec})
				}
			}
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return errors.New("watch channel closed")
}
