package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// waitFor bounds failures only.
const waitFor = 20 * time.Second

func newLogger() (*slog.Logger, *testutil.SyncBuffer) {
	buf := new(testutil.SyncBuffer)
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

// inspect is a plain client that looks at what the matchmaker wrote.
func inspect(t *testing.T, r *testutil.Redis, password string) *goredis.Client {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: r.Addr(), Password: password, MaxRetries: -1, Protocol: 2, DisableIdentity: true})
	t.Cleanup(func() { c.Close() })
	return c
}

func newMatchmaker(t *testing.T, r *testutil.Redis, password string) (*Matchmaker, *testutil.SyncBuffer) {
	t.Helper()
	log, buf := newLogger()
	m := New(Config{Addr: r.Addr(), Password: password, Logger: log})
	t.Cleanup(func() { m.Close() })
	return m, buf
}

// started is a Redis, a matchmaker on it with its log, and a client that
// looks at what the matchmaker wrote.
func started(t *testing.T) (*testutil.Redis, *Matchmaker, *testutil.SyncBuffer, *goredis.Client) {
	t.Helper()
	r := testutil.StartRedis(t, testutil.RedisOptions{})
	m, logs := newMatchmaker(t, r, "")
	return r, m, logs, inspect(t, r, "")
}

func TestRegisterWritesSetsAndLiveness(t *testing.T) {
	_, m, _, c := started(t)
	ctx := context.Background()
	const ttl = 7 * time.Second
	pub := "127.0.0.1:50003,127.0.0.1:50001"
	if err := m.Register(ctx, PublishersKey, pub, ttl); err != nil {
		t.Fatal(err)
	}
	if err := m.Register(ctx, RoutersKey, "127.0.0.1:50002", ttl); err != nil {
		t.Fatal(err)
	}
	for _, s := range []struct {
		key  string
		want []string
	}{
		{PublishersKey, []string{pub}},
		{pub, []string{" "}},
		{RoutersKey, []string{"127.0.0.1:50002"}},
		{"127.0.0.1:50002", []string{" "}},
	} {
		if err := testutil.CheckRedisSet(ctx, c, s.key, s.want, ttl); err != nil {
			t.Error(err)
		}
	}
	keys, err := c.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 4 {
		t.Errorf("keys: got %q, want the 4 sets only", keys)
	}

	if err := m.Unregister(ctx, PublishersKey, pub); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{PublishersKey, pub} {
		if n, err := c.Exists(ctx, key).Result(); err != nil || n != 0 {
			t.Errorf("EXISTS %q after Unregister: got %d (%v), want 0", key, n, err)
		}
	}
}

func TestRegisterRefusesTTLUnderASecond(t *testing.T) {
	r := testutil.StartRedis(t, testutil.RedisOptions{})
	m, _ := newMatchmaker(t, r, "")
	err := m.Register(context.Background(), "DEALER/t", "id", 500*time.Millisecond)
	if !errors.Is(err, ErrBadTTL) {
		t.Errorf("Register with 500ms: got %v, want ErrBadTTL", err)
	}
	if _, err := NewRegistrar(RegistrarConfig{Matchmaker: m, TTL: 0}); !errors.Is(err, ErrBadTTL) {
		t.Errorf("NewRegistrar with TTL 0: got %v, want ErrBadTTL", err)
	}
}

func TestLiveMembersKeepsOnlyLiveOnes(t *testing.T) {
	_, m, _, c := started(t)
	ctx := context.Background()
	const key = "DEALER/compute"
	for _, id := range []string{"h/compute/b/1", "h/compute/a/2", "h/compute/c/3"} {
		if err := m.Register(ctx, key, id, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	// c's liveness set is gone (its process died long ago); a member whose
	// liveness set has no expiry (TTL -1) is live, as in oslo's reader.
	if err := c.Del(ctx, "h/compute/c/3").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.SAdd(ctx, key, "h/compute/d/4").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.SAdd(ctx, "h/compute/d/4", " ").Err(); err != nil {
		t.Fatal(err)
	}
	got, err := m.LiveMembers(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"h/compute/a/2", "h/compute/b/1", "h/compute/d/4"}; !slices.Equal(got, want) {
		t.Errorf("LiveMembers: got %q, want %q", got, want)
	}
	if got, err := m.LiveMembers(ctx, "DEALER/none"); err != nil || len(got) != 0 {
		t.Errorf("LiveMembers of a missing key: got %q, %v, want none", got, err)
	}
}

func TestRegisterExpires(t *testing.T) {
	r := testutil.StartRedis(t, testutil.RedisOptions{})
	m, _ := newMatchmaker(t, r, "")
	ctx := context.Background()
	if err := m.Register(ctx, RoutersKey, "127.0.0.1:1", time.Second); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, waitFor, func() error {
		got, err := m.LiveMembers(ctx, RoutersKey)
		if err != nil || len(got) != 0 {
			return fmt.Errorf("LiveMembers: got %q, %v, want none once the TTL passed", got, err)
		}
		return nil
	})
}

func TestPassword(t *testing.T) {
	r := testutil.StartRedis(t, testutil.RedisOptions{Password: "s3cret"})
	ctx := context.Background()
	bad, _ := newMatchmaker(t, r, "wrong")
	if err := bad.Register(ctx, RoutersKey, "h:1", time.Minute); err == nil {
		t.Error("Register with a wrong password: got no error")
	}
	good, _ := newMatchmaker(t, r, "s3cret")
	if err := good.Register(ctx, RoutersKey, "h:1", time.Minute); err != nil {
		t.Errorf("Register with the password: %v", err)
	}
}

func TestRegistrarRewritesAndUnregisters(t *testing.T) {
	_, m, logs, c := started(t)
	ctx := context.Background()
	const ttl = 3 * time.Second
	entries := []Entry{{PublishersKey, "127.0.0.1:3,127.0.0.1:1"}, {RoutersKey, "127.0.0.1:2"}}
	reg, err := NewRegistrar(RegistrarConfig{Matchmaker: m, Entries: entries, TTL: ttl, Update: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	select {
	case <-reg.Ready(): // written once: the set holds it now
		if err := testutil.CheckRedisSet(ctx, c, RoutersKey, []string{"127.0.0.1:2"}, ttl); err != nil || !reg.Registered() {
			t.Fatalf("Ready closed, registered %v: %v", reg.Registered(), err)
		}
	case <-time.After(waitFor):
		t.Fatal("Ready not closed")
	}
	// Rewritten every Update: past several TTLs, the record is still live.
	if err := c.Expire(ctx, "127.0.0.1:2", time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, waitFor, func() error {
		d, err := c.TTL(ctx, "127.0.0.1:2").Result()
		if err != nil || d <= time.Second {
			return fmt.Errorf("TTL of the liveness set: got %v (%v), want it rewritten to more than 1s", d, err)
		}
		return nil
	})

	reg.Close()
	if reg.Registered() {
		t.Error("Registered after Close: got true")
	}
	for _, key := range []string{PublishersKey, RoutersKey, "127.0.0.1:3,127.0.0.1:1", "127.0.0.1:2"} {
		if n, err := c.Exists(ctx, key).Result(); err != nil || n != 0 {
			t.Errorf("EXISTS %q after Close: got %d (%v), want 0", key, n, err)
		}
	}
	if n := logs.Count(`msg="registered in redis"`); n != 1 {
		t.Errorf(`"registered in redis" logged %d times, want once (rewrites are quiet)`, n)
	}
	if err := reg.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestRegistrarSurvivesRedisRestart(t *testing.T) {
	r, m, logs, c := started(t)
	ctx := context.Background()
	const ttl, update = 6 * time.Second, 2 * time.Second
	entries := []Entry{{RoutersKey, "127.0.0.1:2"}}
	reg, err := NewRegistrar(RegistrarConfig{Matchmaker: m, Entries: entries, TTL: ttl, Update: update})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	testutil.CheckFor(t, waitFor, func() error {
		return testutil.CheckRedisSet(ctx, c, RoutersKey, []string{"127.0.0.1:2"}, ttl)
	})

	// Down long enough for several failed writes: one warning only.
	r.Kill()
	testutil.CheckFor(t, waitFor, func() error {
		if n := reg.Failures(); reg.Registered() || n < 3 {
			return fmt.Errorf("registered %v after %d failed writes, want false after 3", reg.Registered(), n)
		}
		return nil
	})
	if n := logs.Count("redis unreachable"); n != 1 {
		t.Errorf(`"redis unreachable" logged %d times after %d failed writes, want 1`, n, reg.Failures())
	}
	r.Start()
	back := time.Now()
	testutil.CheckFor(t, waitFor, func() error {
		return testutil.CheckRedisSet(ctx, c, RoutersKey, []string{"127.0.0.1:2"}, ttl)
	})
	if took := time.Since(back); took > update+2*time.Second {
		t.Errorf("records back %v after Redis, want within zmq_target_update (%v)", took, update)
	}
	if n := logs.Count("redis unreachable"); n != 1 {
		t.Errorf(`"redis unreachable" logged %d times in one outage, want 1`, n)
	}
	testutil.CheckFor(t, waitFor, func() error {
		if n := logs.Count("registered in redis again"); n != 1 {
			return fmt.Errorf(`"registered in redis again" logged %d times, want 1`, n)
		}
		return nil
	})

	// A restart between two writes, unseen by the registrar: the next
	// write, within Update, puts the records back.
	r.Restart()
	back = time.Now()
	testutil.CheckFor(t, waitFor, func() error {
		return testutil.CheckRedisSet(ctx, c, RoutersKey, []string{"127.0.0.1:2"}, ttl)
	})
	if took := time.Since(back); took > update+2*time.Second {
		t.Errorf("records back %v after a quick restart, want within zmq_target_update (%v)", took, update)
	}
}

func TestFollow(t *testing.T) {
	r := testutil.StartRedis(t, testutil.RedisOptions{})
	m, logs := newMatchmaker(t, r, "")
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var calls [][]string
	done := make(chan error, 1)
	go func() {
		done <- m.Follow(ctx, PublishersKey, 20*time.Millisecond, func(members []string) {
			mu.Lock()
			calls = append(calls, members)
			mu.Unlock()
		})
	}()
	want := func(n int, last []string) func() error {
		return func() error {
			mu.Lock()
			defer mu.Unlock()
			if len(calls) != n || !slices.Equal(calls[n-1], last) {
				return fmt.Errorf("calls: got %q, want %d, the last %q", calls, n, last)
			}
			return nil
		}
	}
	testutil.CheckFor(t, waitFor, want(1, nil))
	if err := m.Register(ctx, PublishersKey, "h:3,h:1", time.Minute); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, waitFor, want(2, []string{"h:3,h:1"}))

	r.Kill()
	testutil.CheckFor(t, waitFor, func() error {
		if n := logs.Count("redis unreachable"); n != 1 {
			return fmt.Errorf(`"redis unreachable" logged %d times, want 1`, n)
		}
		return nil
	})
	r.Start() // empty: the member is gone
	testutil.CheckFor(t, waitFor, want(3, nil))
	if n := logs.Count("redis unreachable"); n != 1 {
		t.Errorf(`"redis unreachable" logged %d times in one outage, want 1`, n)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Follow returned %v, want context.Canceled", err)
	}
}

func TestParseURL(t *testing.T) {
	tests := []struct {
		url      string
		wantHost string
		wantPort int
		wantPass string
		wantDB   int
		wantErr  bool
	}{
		{url: "zmq+redis://127.0.0.1:6379", wantHost: "127.0.0.1", wantPort: 6379},
		{url: "zmq+redis://:pw@r1:6390/2", wantHost: "r1", wantPort: 6390, wantPass: "pw", wantDB: 2},
		{url: "zmq+redis://pw@r1:6390/", wantHost: "r1", wantPort: 6390, wantPass: "pw"},
		{url: "zmq+redis://[::1]:7000", wantHost: "::1", wantPort: 7000},
		{url: "zmq+redis://", wantHost: ""},
		{url: "ZMQ+REDIS://r", wantHost: "r"},
		{url: "zmq+redis://r:0", wantErr: true},
		{url: "zmq+redis://r:x", wantErr: true},
		{url: "zmq+redis://r:1/db", wantErr: true},
		{url: "zmq+redis://r:1,s:2", wantErr: true},
		{url: "zmq+redis://r:1?x=1", wantErr: true},
		{url: "zmq+etcd://r:1", wantErr: true},
	}
	for _, tt := range tests {
		host, port, pass, db, err := ParseURL(tt.url)
		if tt.wantErr {
			if !errors.Is(err, ErrBadURL) {
				t.Errorf("ParseURL(%q): got error %v, want ErrBadURL", tt.url, err)
			}
			continue
		}
		if err != nil || host != tt.wantHost || port != tt.wantPort || pass != tt.wantPass || db != tt.wantDB {
			t.Errorf("ParseURL(%q): got %q %d %q %d %v, want %q %d %q %d", tt.url, host, port, pass, db, err,
				tt.wantHost, tt.wantPort, tt.wantPass, tt.wantDB)
		}
	}
}

// Close with Redis gone: the failure is logged, the records expire on
// their own, and Close returns.
func TestRegistrarCloseWithRedisDown(t *testing.T) {
	r := testutil.StartRedis(t, testutil.RedisOptions{})
	m, logs := newMatchmaker(t, r, "")
	reg, err := NewRegistrar(RegistrarConfig{Matchmaker: m, Entries: []Entry{{RoutersKey, "h:1"}}, TTL: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	testutil.CheckTrue(t, waitFor, "not registered", func() bool { return reg.Registered() })
	r.Kill()
	if err := reg.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if n := logs.Count("unregister from redis failed"); n != 1 {
		t.Errorf(`"unregister from redis failed" logged %d times, want 1`, n)
	}
}

func TestTargetKeys(t *testing.T) {
	if got, want := TopicKey("compute"), "DEALER/compute"; got != want {
		t.Errorf("TopicKey: got %q, want %q", got, want)
	}
	for _, tt := range []struct{ server, want string }{
		{"node-1", "DEALER/compute/node-1"},
		{"node-1@host.example", "DEALER/compute/node-1"},
		{"a@b@c", "DEALER/compute/a"},
	} {
		if got := ServerKey("compute", tt.server); got != tt.want {
			t.Errorf("ServerKey(compute, %q): got %q, want %q", tt.server, got, tt.want)
		}
	}
}

// A Redis that loses its data without an outage the registrar sees (a
// restart between two writes, a FLUSHALL) gets the entries again within
// Check, not at the next Update; the rewrite is logged once.
func TestRegistrarRewritesWhatRedisLost(t *testing.T) {
	_, m, logs, c := started(t)
	ctx := context.Background()
	entries := []Entry{{PublishersKey, "127.0.0.1:3,127.0.0.1:1"}, {RoutersKey, "127.0.0.1:2"}}
	reg, err := NewRegistrar(RegistrarConfig{Matchmaker: m, Entries: entries, TTL: time.Hour, Update: time.Hour,
		Check: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	<-reg.Ready()
	if err := c.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	testutil.CheckFor(t, waitFor, func() error {
		return testutil.CheckRedisSet(ctx, c, RoutersKey, []string{"127.0.0.1:2"}, time.Hour)
	})
	testutil.CheckFor(t, waitFor, func() error {
		if n := logs.Count("registrations missing from redis"); n != 1 {
			return fmt.Errorf("logged %d times, want once", n)
		}
		return nil
	})
}
