package testutil

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"golang.org/x/crypto/bcrypt"
)

// TestMain fails the package on leaked goroutines. It ignores none: the
// embedded etcd waits for its goroutines in Close, the clients are closed in
// Cleanup, and each member process's waiter ends when the member is reaped.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// put writes key=val within a few seconds, retrying: a request that was in
// flight to a member killed under it fails, and a client retries.
func put(t *testing.T, cli *clientv3.Client, key, val string) {
	t.Helper()
	CheckFor(t, 10*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if _, err := cli.Put(ctx, key, val); err != nil {
			t.Logf("put %s: %v; retrying", key, err)
			return fmt.Errorf("put %s: %w", key, err)
		}
		return nil
	})
}

// get reads key with opts and returns its value, or "" if it is absent.
func get(t *testing.T, cli *clientv3.Client, key string, opts ...clientv3.OpOption) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, key, opts...)
	if err != nil || len(resp.Kvs) == 0 {
		return "", err
	}
	return string(resp.Kvs[0].Value), nil
}

// mustGet fails the test unless key holds want.
func mustGet(t *testing.T, cli *clientv3.Client, key, want string) {
	t.Helper()
	got, err := get(t, cli, key)
	if err != nil || got != want {
		t.Fatalf("get %s: got %q (err %v), want %q", key, got, err, want)
	}
}

func TestEmbedded(t *testing.T) {
	e := Embedded(t)
	cli := e.Client(t)
	put(t, cli, "k", "v")
	mustGet(t, cli, "k", "v")
	before := e.Endpoints()

	e.Stop()
	if e.Server() != nil {
		t.Fatal("Server() after Stop: got a server, want nil")
	}
	e.Stop() // twice is harmless
	e.Start()
	if got := e.Endpoints(); got[0] != before[0] {
		t.Fatalf("endpoints after restart: got %v, want %v", got, before)
	}
	// The old client reconnects to the same address and sees the old data.
	CheckFor(t, 10*time.Second, func() error {
		if (func() bool {
			got, err := get(t, cli, "k")
			return err == nil && got == "v"
		})() {
			return nil
		}
		return errors.New("data lost across restart")
	})
}

// The tests' etcd hashes passwords at bcrypt's least cost, so that a
// login (TestWatcherLogsRefusalOnce's, within a client's dial timeout)
// costs microseconds, not seconds on a loaded machine.
func TestEmbeddedBcryptCost(t *testing.T) {
	e := Embedded(t)
	if got := e.Server().BcryptCost(); got != bcrypt.MinCost {
		t.Errorf("bcrypt cost of the embedded etcd: got %d, want %d", got, bcrypt.MinCost)
	}
}

func TestCluster(t *testing.T) {
	start := time.Now()
	c := Cluster(t, 3)
	t.Logf("cluster of 3 up in %s", time.Since(start))
	cli := c.Client(t)
	put(t, cli, "a", "1")
	mustGet(t, cli, "a", "1")

	// Kill the leader: the others elect a new one and go on.
	victim := leaderIndex(t, c, cli)
	start = time.Now()
	c.Kill(victim)
	put(t, cli, "b", "2")
	mustGet(t, cli, "b", "2")
	t.Logf("member %d (leader) killed, put/get again in %s", victim, time.Since(start))

	start = time.Now()
	c.Start(victim)
	t.Logf("member %d rejoined in %s", victim, time.Since(start))
	alone, err := dialEtcd([]string{c.Endpoint(victim)})
	if err != nil {
		t.Fatal(err)
	}
	defer alone.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := alone.Status(ctx, c.Endpoint(victim)); err != nil {
		t.Fatalf("Status of restarted member: %v", err)
	}
	// It caught up with what was written while it was down: its local,
	// serializable read has it.
	CheckFor(t, 10*time.Second, func() error {
		if (func() bool {
			got, err := get(t, alone, "b", clientv3.WithSerializable())
			return err == nil && got == "2"
		})() {
			return nil
		}
		return fmt.Errorf("restarted member %d did not catch up", victim)
	})
}

// leaderIndex returns the index of the member that leads.
func leaderIndex(t *testing.T, c *EtcdCluster, cli *clientv3.Client) int {
	t.Helper()
	for i, ep := range c.Endpoints() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := cli.Status(ctx, ep)
		cancel()
		if err != nil {
			t.Fatalf("Status %s: %v", ep, err)
		}
		if st.Leader == st.Header.MemberId {
			return i
		}
	}
	t.Fatal("no member leads")
	return -1
}
