package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const wait = 30 * time.Second

func record(id string) Record {
	return Record{ID: id, Kind: "double-router", Host: "h", Frontend: "tcp://127.0.0.1:1", Publisher: "tcp://127.0.0.1:3",
		Started: time.Unix(1700000000, 0).UTC(), Generation: 1}
}

func newClient(t *testing.T, endpoints []string) *clientv3.Client {
	t.Helper()
	cli, err := NewClient(ClientConfig{Endpoints: endpoints})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func register(t *testing.T, cli *clientv3.Client, rec Record, ttl time.Duration) *Registrar {
	t.Helper()
	r, err := NewRegistrar(Config{Client: cli, TTL: ttl, Logger: testutil.Quiet(), RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond}, rec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// eventLog runs a Watcher and keeps what it reports.
type eventLog struct {
	mu     sync.Mutex
	events []Event
	set    map[string]Record
	synced int
}

func watch(t *testing.T, cli *clientv3.Client) *eventLog {
	t.Helper()
	return watchLogging(t, cli, testutil.Quiet())
}

// watchLogging is watch with the watcher's log going to logger.
func watchLogging(t *testing.T, cli *clientv3.Client, logger *slog.Logger) *eventLog {
	t.Helper()
	l := &eventLog{set: make(map[string]Record)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	w := NewWatcher(cli, "", logger)
	go func() {
		defer close(done)
		_ = w.Run(ctx, l.add, func() { l.mu.Lock(); l.synced++; l.mu.Unlock() })
	}()
	t.Cleanup(func() { cancel(); <-done })
	return l
}

func (l *eventLog) add(ev Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, ev)
	if ev.Type == EventPut {
		l.set[ev.ID] = ev.Record
	} else {
		delete(l.set, ev.ID)
	}
}

// addEntry is add for the watch set's callback.
func (l *eventLog) addEntry(t EventType, id string, rec Record) {
	l.add(Event{Type: t, ID: id, Record: rec})
}

func (l *eventLog) has(id string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, ok := l.set[id]
	return ok
}

func (l *eventLog) count(typ EventType, id string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, ev := range l.events {
		if ev.Type == typ && ev.ID == id {
			n++
		}
	}
	return n
}

func keyExists(t *testing.T, cli *clientv3.Client, id string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, Key(DefaultPrefix, id))
	if err != nil {
		return false
	}
	return len(resp.Kvs) == 1
}

// keptAlive watches record id until its lease has lived through n of its
// granted TTLs since the first look, and fails at once if the record is
// gone or its lease has expired or changed at any look: a lease that is
// not kept alive expires within one TTL.
func keptAlive(t *testing.T, cli *clientv3.Client, id string, n int) {
	t.Helper()
	var lease clientv3.LeaseID
	var start time.Time
	testutil.CheckFor(t, wait, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		resp, err := cli.Get(ctx, Key(DefaultPrefix, id))
		if err != nil {
			return err
		}
		if len(resp.Kvs) != 1 {
			t.Fatalf("record %s gone %v after the first look", id, time.Since(start))
		}
		if lease == 0 {
			lease, start = clientv3.LeaseID(resp.Kvs[0].Lease), time.Now()
		} else if got := clientv3.LeaseID(resp.Kvs[0].Lease); got != lease {
			t.Fatalf("record %s: lease %x replaced by %x: the first was lost", id, lease, got)
		}
		ttl, err := cli.TimeToLive(ctx, lease)
		if err != nil {
			return err
		}
		if ttl.TTL < 0 {
			t.Fatalf("record %s: lease %x expired", id, lease)
		}
		if lived := time.Since(start); lived < time.Duration(n)*time.Duration(ttl.GrantedTTL)*time.Second {
			return fmt.Errorf("record %s: lease kept alive for %v of %d TTLs (%d s)", id, lived.Round(time.Millisecond), n, ttl.GrantedTTL)
		}
		return nil
	})
}

func TestRegisterWatchAndCloseRemovesAtOnce(t *testing.T) {
	etcd := testutil.Embedded(t)
	cli := newClient(t, etcd.Endpoints())
	events := watch(t, cli)
	r := register(t, cli, record("a"), 5*time.Second)
	testutil.CheckTrue(t, wait, "watch did not see the record", func() bool { return events.has("a") && r.Registered() })
	if got := events.set["a"]; got != record("a") {
		t.Fatalf("watched record: got %+v, want %+v", got, record("a"))
	}
	upd := record("a")
	upd.Backend = "tcp://127.0.0.1:2"
	if err := r.Update(upd); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, wait, func() error {
		events.mu.Lock()
		defer events.mu.Unlock()
		if events.set["a"].Backend == "" {
			return errors.New("update not seen")
		}
		return nil
	})

	r.Close()
	// Revoked, not expired: gone as soon as Close returns.
	if keyExists(t, cli, "a") {
		t.Fatal("record still in etcd after Close")
	}
	testutil.CheckFor(t, wait, func() error {
		if events.has("a") {
			return errors.New("watch did not see the delete")
		}
		return nil
	})
	if n := events.count(EventDelete, "a"); n != 1 {
		t.Fatalf("delete events: got %d, want 1", n)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// A proxy that dies without a word: its keep-alives stop, and its record
// expires after the TTL.
func TestRecordOfDeadProxyExpiresAfterTTL(t *testing.T) {
	etcd := testutil.Embedded(t)
	cli := newClient(t, etcd.Endpoints())
	dying, err := NewClient(ClientConfig{Endpoints: etcd.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	r := register(t, dying, record("dead"), time.Second)
	testutil.CheckTrue(t, wait, "not registered", func() bool { return r.Registered() })
	resp, err := cli.Get(context.Background(), Key(DefaultPrefix, "dead"))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("record: %v %v", resp, err)
	}
	lease := clientv3.LeaseID(resp.Kvs[0].Lease)
	dying.Close() // no revoke, no keep-alive: as if killed
	start := time.Now()
	// Not revoked: the lease is still there, counting down. (etcd grants
	// at least its minimum TTL, 2 s for the embedded member's timing.)
	ttl, err := cli.TimeToLive(context.Background(), lease)
	if err != nil {
		t.Fatal(err)
	}
	if ttl.TTL < 0 || ttl.TTL > ttl.GrantedTTL || ttl.GrantedTTL > 2 {
		t.Fatalf("lease after the death: %d s left of %d, want 0..granted, granted at most 2 (not revoked)", ttl.TTL, ttl.GrantedTTL)
	}
	testutil.CheckFor(t, wait, func() error {
		if keyExists(t, cli, "dead") {
			return errors.New("the record of the dead proxy is still there")
		}
		return nil
	})
	if ttl, err := cli.TimeToLive(context.Background(), lease); err != nil || ttl.TTL != -1 {
		t.Fatalf("lease after the record went: %+v %v, want expired (TTL -1)", ttl, err)
	}
	t.Logf("record expired %s after its keep-alives stopped (TTL 1s)", time.Since(start).Round(10*time.Millisecond))
}

// etcd goes away for longer than the TTL and comes back: the registrar
// notices the lost lease, and registers again by itself.
func TestRegistersAgainAfterEtcdRestart(t *testing.T) {
	etcd := testutil.Embedded(t)
	cli := newClient(t, etcd.Endpoints())
	r := register(t, cli, record("phoenix"), time.Second)
	testutil.CheckTrue(t, wait, "not registered", func() bool { return r.Registered() })
	lost := r.Lost()
	etcd.Stop()
	select {
	case <-lost:
	case <-time.After(wait):
		t.Fatal("lease loss not noticed while etcd was down")
	}
	if r.Registered() {
		t.Fatal("Registered() true while etcd is down")
	}
	etcd.Start()
	testutil.CheckTrue(t, wait, "did not register again", func() bool { return r.Registered() && keyExists(t, cli, "phoenix") })
	// And it stays: the new lease is kept alive past a few TTLs.
	keptAlive(t, cli, "phoenix", 2)
}

// The watch falls behind a compaction: the watcher lists again and reports
// only the differences, each once.
func TestWatcherRelistsAfterCompaction(t *testing.T) {
	etcd := testutil.Embedded(t)
	cli := newClient(t, etcd.Endpoints())
	ctx := context.Background()
	put := func(rec Record) {
		v, _ := rec.marshal()
		if _, err := cli.Put(ctx, Key(DefaultPrefix, rec.ID), v); err != nil {
			t.Fatal(err)
		}
	}
	put(record("keep"))
	put(record("gone"))
	put(record("changed"))

	l := &eventLog{set: make(map[string]Record)}
	w := NewWatcher(cli, "", testutil.Quiet())
	rev, err := w.set.list(ctx, l.addEntry)
	if err != nil {
		t.Fatal(err)
	}
	// Changes the watcher has not seen, then a compaction past them.
	if _, err := cli.Delete(ctx, Key(DefaultPrefix, "gone")); err != nil {
		t.Fatal(err)
	}
	put(record("new"))
	ch := record("changed")
	ch.Generation = 2
	put(ch)
	resp, err := cli.Get(ctx, "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	if err := w.set.watch(ctx, rev, l.addEntry); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Fatalf("watch from a compacted revision: got %v, want ErrCompacted", err)
	}
	// What Run does next: list again.
	if _, err := w.set.list(ctx, l.addEntry); err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"keep": 1, "changed": 2, "new": 1}
	got := map[string]int64{}
	for _, r := range w.Records() {
		got[r.ID] = r.Generation
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("records after re-list: got %v, want %v", got, want)
	}
	for _, c := range []struct {
		typ  EventType
		id   string
		want int
	}{{EventPut, "keep", 1}, {EventPut, "gone", 1}, {EventDelete, "gone", 1}, {EventPut, "changed", 2}, {EventPut, "new", 1}} {
		if n := l.count(c.typ, c.id); n != c.want {
			t.Errorf("%s events for %s: got %d, want %d", c.typ, c.id, n, c.want)
		}
	}
}

// The same through Run, with compactions while the watch is live.
func TestWatcherRunEndsWithRightSetUnderCompaction(t *testing.T) {
	etcd := testutil.Embedded(t)
	cli := newClient(t, etcd.Endpoints())
	events := watch(t, cli)
	ctx := context.Background()
	for i := range 20 {
		rec := record(fmt.Sprintf("p%d", i))
		v, _ := rec.marshal()
		resp, err := cli.Put(ctx, Key(DefaultPrefix, rec.ID), v)
		if err != nil {
			t.Fatal(err)
		}
		if i%2 == 1 {
			if _, err := cli.Delete(ctx, Key(DefaultPrefix, fmt.Sprintf("p%d", i-1))); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := cli.Compact(ctx, resp.Header.Revision); err != nil {
			t.Fatal(err)
		}
	}
	testutil.CheckFor(t, wait, func() error {
		events.mu.Lock()
		defer events.mu.Unlock()
		for i := 1; i < 20; i += 2 {
			if _, ok := events.set[fmt.Sprintf("p%d", i)]; !ok {
				return fmt.Errorf("p%d not in the watcher's records", i)
			}
		}
		if len(events.set) != 10 {
			return fmt.Errorf("watcher has %d records, want the 10 odd ones", len(events.set))
		}
		return nil
	})
	for i := range 20 {
		if n := events.count(EventPut, fmt.Sprintf("p%d", i)); n > 1 {
			t.Errorf("p%d reported %d times", i, n)
		}
	}
}

func TestBadRecordsAreRefused(t *testing.T) {
	for _, rec := range []Record{{}, {ID: "x"}, {Kind: "local"}} {
		if err := rec.Validate(); !errors.Is(err, ErrBadRecord) {
			t.Errorf("Validate(%+v): got %v, want ErrBadRecord", rec, err)
		}
	}
	if _, err := NewRegistrar(Config{}, record("a")); err == nil {
		t.Error("NewRegistrar without a client: got no error")
	}
}

// A real three-member cluster of etcd processes: one member is killed,
// and the registration, new registrations and the watch go on.
func TestClusterMemberKilled(t *testing.T) {
	cluster := testutil.Cluster(t, 3)
	cli := newClient(t, cluster.Endpoints())
	events := watch(t, newClient(t, cluster.Endpoints()))
	r := register(t, cli, record("c1"), 2*time.Second)
	testutil.CheckTrue(t, wait, "not registered on the cluster", func() bool { return r.Registered() && events.has("c1") })
	cluster.Kill(0)
	r2 := register(t, cli, record("c2"), 2*time.Second)
	testutil.CheckTrue(t, wait, "registration after a member died not seen", func() bool { return r2.Registered() && events.has("c2") })
	// The first registration outlives several TTLs with one member down.
	keptAlive(t, cli, "c1", 2)
	if !events.has("c1") {
		t.Fatal("c1 lost from the watch with one member of three down")
	}
	r2.Close()
	testutil.CheckFor(t, wait, func() error {
		if events.has("c2") {
			return errors.New("delete not watched with a member down")
		}
		return nil
	})
	cluster.Start(0)
}

// etcd goes away under a running watcher and comes back: the watcher
// carries on by itself and sees what changes afterwards.
func TestWatcherSurvivesEtcdRestart(t *testing.T) {
	etcd := testutil.Embedded(t)
	cli := newClient(t, etcd.Endpoints())
	events := watch(t, cli)
	ctx := context.Background()
	put := func(c *clientv3.Client, rec Record) {
		v, _ := rec.marshal()
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if _, err := c.Put(pctx, Key(DefaultPrefix, rec.ID), v); err != nil {
			t.Fatal(err)
		}
	}
	put(cli, record("before"))
	testutil.CheckTrue(t, wait, "record not watched", func() bool { return events.has("before") })
	etcd.Stop()
	etcd.Start()
	fresh := newClient(t, etcd.Endpoints()) // the test's own writes need not wait for cli's reconnect backoff
	if _, err := fresh.Delete(ctx, Key(DefaultPrefix, "before")); err != nil {
		t.Fatal(err)
	}
	put(fresh, record("after"))
	testutil.CheckFor(t, wait, func() error {
		if events.has("before") || !events.has("after") {
			return errors.New("changes after the etcd restart not watched")
		}
		return nil
	})
	if n := events.count(EventPut, "after"); n != 1 {
		t.Fatalf("put events for the new record: got %d, want 1", n)
	}
}

// A watcher whose listing etcd refuses logs one warning with the reason,
// retries at debug level, and says once when listing works again, after
// which it reports the records.
func TestWatcherLogsRefusalOnce(t *testing.T) {
	etcd := testutil.Embedded(t)
	root := newClient(t, etcd.Endpoints())
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	prefix := DefaultPrefix + "proxies/"
	testutil.AddEtcdUser(t, root, "w", "wpw") // may read nothing yet
	testutil.EnableEtcdAuth(t, root, "rootpw")
	// Logins within a dial timeout no loaded machine reaches (the tests' etcd
	// hashes at bcrypt's least cost too).
	admin, err := NewClient(ClientConfig{Endpoints: etcd.Endpoints(), Username: "root", Password: "rootpw", DialTimeout: wait})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() }) // after the watcher's cleanup
	cli, err := NewClient(ClientConfig{Endpoints: etcd.Endpoints(), Username: "w", Password: "wpw", DialTimeout: wait})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })

	var logs testutil.SyncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	events := watchLogging(t, cli, logger)

	testutil.CheckFor(t, wait, func() error { // a few retries
		if n := logs.Count("registry listing failed again"); n < 2 {
			return fmt.Errorf("%d retries logged, want 2", n)
		}
		return nil
	})
	if n := logs.Count("level=WARN msg=\"registry listing failed, retrying with backoff\""); n != 1 || logs.Count("permission denied") < 1 {
		t.Errorf("%d warnings, want 1 with etcd's reason:\n%s", n, logs.String())
	}
	if _, err := admin.RoleGrantPermission(ctx, "w", prefix, clientv3.GetPrefixRangeEnd(prefix), clientv3.PermissionType(clientv3.PermRead)); err != nil {
		t.Fatal(err)
	}
	v, _ := record("seen").marshal()
	if _, err := admin.Put(ctx, Key(DefaultPrefix, "seen"), v); err != nil {
		t.Fatal(err)
	}
	testutil.CheckTrue(t, wait, "record not reported after the permission was granted", func() bool { return events.has("seen") })
	if n := logs.Count(`level=INFO msg="registry listing works again"`); n != 1 {
		t.Errorf("%d recoveries logged, want 1:\n%s", n, logs.String())
	}
	if n := logs.Count("level=WARN"); n != 1 {
		t.Errorf("%d warnings in all, want 1:\n%s", n, logs.String())
	}
}
