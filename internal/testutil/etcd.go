package testutil

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"

	"github.com/zmq-proxy/zmq-proxy/internal/etcdserver"
)

// Bounds of the etcd helpers. They bound failures only: a healthy etcd is
// waited for as long as it takes to answer, not longer.
const (
	etcdReadyTimeout = 30 * time.Second       // a member or cluster comes up
	etcdCallTimeout  = 500 * time.Millisecond // one Status attempt
	etcdKillTimeout  = 10 * time.Second       // a SIGKILLed process is reaped
	etcdPoll         = 20 * time.Millisecond  // between Status attempts
)

// EtcdBinary is Debian's etcd-server, which Cluster runs.
const EtcdBinary = "/usr/bin/etcd"

// EmbeddedEtcd is an embedded single-member etcd (internal/etcdserver) on
// random loopback ports, for in-process integration tests. Its ports and
// data dir stay the same across Stop and Start, so a test can take the
// registry away and bring it back with its data.
//
// Start, Stop and Client call t.Fatal on failure: call them from the test's
// goroutine.
type EmbeddedEtcd struct {
	t    testing.TB
	opts etcdserver.Options // ports fixed after the first start

	mu  sync.Mutex
	srv *etcdserver.Server // nil while stopped
}

// Embedded starts an embedded etcd on random loopback ports with its data in
// t.TempDir(); it is closed in t.Cleanup. etcd's own errors go to the test
// log.
func Embedded(t testing.TB) *EmbeddedEtcd {
	t.Helper()
	e := &EmbeddedEtcd{t: t, opts: etcdserver.Options{
		ClientAddr: "127.0.0.1:0",
		DataDir:    filepath.Join(t.TempDir(), "etcd"),
		Logger:     slog.New(slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: slog.LevelError})),
		// A login costs a bcrypt comparison: at etcd's default cost, up
		// to seconds on a loaded machine with -race, which a client's
		// dial timeout (it logs in while it dials) did not always allow.
		BcryptCost: bcrypt.MinCost,
	}}
	e.Start()
	t.Cleanup(e.Stop)
	return e
}

// Endpoints returns the client URL, the same across restarts.
func (e *EmbeddedEtcd) Endpoints() []string {
	return []string{"http://" + e.opts.ClientAddr}
}

// Server returns the running server, or nil while stopped.
func (e *EmbeddedEtcd) Server() *etcdserver.Server {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.srv
}

// Stop closes the server and waits for it; it does nothing if stopped.
func (e *EmbeddedEtcd) Stop() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.srv != nil {
		e.srv.Close()
		e.srv = nil
	}
}

// Start starts the server again on the same ports and data dir, and waits
// until it serves; it does nothing if running.
func (e *EmbeddedEtcd) Start() {
	e.t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.srv != nil {
		return
	}
	srv, err := etcdserver.Start(e.opts)
	if err != nil {
		e.t.Fatalf("embedded etcd: %v", err)
	}
	e.srv = srv
	e.opts.ClientAddr, e.opts.PeerAddr = srv.ClientAddr(), srv.PeerAddr()
}

// Client returns a v3 client of the server, closed in t.Cleanup.
func (e *EmbeddedEtcd) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	return newEtcdClient(t, e.Endpoints())
}

// EtcdCluster is a real etcd cluster: one process of Debian's etcd-server
// (3.4) per member, on random loopback ports, each with its own data dir.
//
// Kill, Start and Client call t.Fatal on failure: call them from the test's
// goroutine.
type EtcdCluster struct {
	t       testing.TB
	token   string // --initial-cluster-token
	initial string // --initial-cluster
	members []*etcdMember
}

// etcdMember is one member process. cmd and done are replaced on restart.
type etcdMember struct {
	name      string
	dataDir   string
	logPath   string // its stdout and stderr, appended to across restarts
	clientURL string
	peerURL   string
	cmd       *exec.Cmd     // nil while killed
	done      chan struct{} // closed when cmd has been waited for
}

// Cluster starts an n-member etcd cluster and waits until every member
// answers and they agree on a leader. The members are killed (SIGKILL) and
// reaped in t.Cleanup. If the test failed, the tail of each member's log is
// written to the test log.
func Cluster(t testing.TB, n int) *EtcdCluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("Cluster(%d): want at least one member", n)
	}
	if _, err := os.Stat(EtcdBinary); err != nil {
		t.Fatalf("no %s (%v): run .ci/test.sh, it installs etcd-server", EtcdBinary, err)
	}
	ports := FreePorts(t, 2*n)
	dir := t.TempDir()
	c := &EtcdCluster{t: t, token: "zmq-proxy-test-" + strconv.Itoa(ports[0])}
	var initial []string
	for i := range n {
		m := &etcdMember{
			name:      "m" + strconv.Itoa(i),
			clientURL: "http://127.0.0.1:" + strconv.Itoa(ports[2*i]),
			peerURL:   "http://127.0.0.1:" + strconv.Itoa(ports[2*i+1]),
		}
		m.dataDir = filepath.Join(dir, m.name)
		m.logPath = filepath.Join(dir, m.name+".log")
		c.members = append(c.members, m)
		initial = append(initial, m.name+"="+m.peerURL)
	}
	c.initial = strings.Join(initial, ",")
	t.Cleanup(c.cleanup)
	for _, m := range c.members {
		c.spawn(m, "new")
	}
	c.waitHealthy(c.members...)
	return c
}

// Endpoints returns the client URLs of all members, in member order.
func (c *EtcdCluster) Endpoints() []string {
	eps := make([]string, len(c.members))
	for i, m := range c.members {
		eps[i] = m.clientURL
	}
	return eps
}

// Endpoint returns member i's client URL.
func (c *EtcdCluster) Endpoint(i int) string { return c.members[i].clientURL }

// Kill sends SIGKILL to member i's process and waits until it is reaped.
// It does nothing if the member is already killed.
func (c *EtcdCluster) Kill(i int) {
	c.t.Helper()
	if err := c.kill(c.members[i]); err != nil {
		c.t.Fatal(err)
	}
}

// Start restarts member i on its ports and data dir
// (--initial-cluster-state existing) and waits until it answers and knows
// the leader. It does nothing if the member runs.
func (c *EtcdCluster) Start(i int) {
	c.t.Helper()
	m := c.members[i]
	if m.cmd != nil {
		return
	}
	c.spawn(m, "existing")
	c.waitHealthy(m)
}

// Client returns a v3 client of all members, closed in t.Cleanup.
func (c *EtcdCluster) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	return newEtcdClient(t, c.Endpoints())
}

// spawn starts m's process with state "new" or "existing".
func (c *EtcdCluster) spawn(m *etcdMember, state string) {
	c.t.Helper()
	logf, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.t.Fatal(err)
	}
	defer logf.Close() // the child has its own descriptor
	cmd := exec.Command(EtcdBinary,
		"--name", m.name,
		"--data-dir", m.dataDir,
		"--listen-client-urls", m.clientURL,
		"--advertise-client-urls", m.clientURL,
		"--listen-peer-urls", m.peerURL,
		"--initial-advertise-peer-urls", m.peerURL,
		"--initial-cluster", c.initial,
		"--initial-cluster-state", state,
		"--initial-cluster-token", c.token,
		"--logger", "zap",
		"--log-outputs", "stderr",
	)
	cmd.Env = etcdEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("start etcd member %s: %v", m.name, err)
	}
	done := make(chan struct{})
	go func() { // owned by kill, which waits for done
		cmd.Wait()
		close(done)
	}()
	m.cmd, m.done = cmd, done
}

// kill SIGKILLs m's process, by its PID, and waits until it is reaped.
func (c *EtcdCluster) kill(m *etcdMember) error {
	if m.cmd == nil {
		return nil
	}
	cmd, done := m.cmd, m.done
	m.cmd, m.done = nil, nil
	if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill etcd member %s (pid %d): %w", m.name, cmd.Process.Pid, err)
	}
	select {
	case <-done:
		return nil
	case <-time.After(etcdKillTimeout):
		return fmt.Errorf("etcd member %s (pid %d) not reaped within %s of SIGKILL", m.name, cmd.Process.Pid, etcdKillTimeout)
	}
}

// cleanup kills every member and, if the test failed, logs their logs'
// tails.
func (c *EtcdCluster) cleanup() {
	for _, m := range c.members {
		if err := c.kill(m); err != nil {
			c.t.Error(err)
		}
	}
	if !c.t.Failed() {
		return
	}
	for _, m := range c.members {
		if b, err := os.ReadFile(m.logPath); err == nil {
			c.t.Logf("etcd member %s log (tail):\n%s", m.name, tail(b, 30))
		}
	}
}

// waitHealthy waits until each of members answers Status and knows a
// leader, and all of them name the same one.
func (c *EtcdCluster) waitHealthy(members ...*etcdMember) {
	c.t.Helper()
	cli, err := dialEtcd(c.Endpoints())
	if err != nil {
		c.t.Fatal(err)
	}
	defer cli.Close()
	deadline := time.Now().Add(etcdReadyTimeout)
	var last error
	for {
		last = statusAll(cli, members)
		if last == nil {
			return
		}
		for _, m := range members {
			if m.cmd != nil && exited(m.done) {
				c.t.Fatalf("etcd member %s exited while starting; see %s", m.name, m.logPath)
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("etcd cluster not healthy within %s: %v", etcdReadyTimeout, last)
		}
		time.Sleep(etcdPoll)
	}
}

// statusAll asks each member for its status and checks that they agree on
// a leader.
func statusAll(cli *clientv3.Client, members []*etcdMember) error {
	var leader uint64
	for _, m := range members {
		ctx, cancel := context.WithTimeout(context.Background(), etcdCallTimeout)
		st, err := cli.Status(ctx, m.clientURL)
		cancel()
		switch {
		case err != nil:
			return fmt.Errorf("member %s: %w", m.name, err)
		case st.Leader == 0:
			return fmt.Errorf("member %s: no leader", m.name)
		case leader != 0 && st.Leader != leader:
			return fmt.Errorf("member %s: leader %x, others %x", m.name, st.Leader, leader)
		}
		leader = st.Leader
	}
	return nil
}

// exited reports whether done is closed.
func exited(done chan struct{}) bool {
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// etcdEnv is the environment of a member: ours without ETCD_* variables
// (etcd reads them as flags and refuses ones that a flag also sets), plus
// ETCD_UNSUPPORTED_ARCH where etcd 3.4 wants it.
func etcdEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ETCD_") {
			env = append(env, kv)
		}
	}
	if a := runtime.GOARCH; a != "amd64" && a != "ppc64le" {
		env = append(env, "ETCD_UNSUPPORTED_ARCH="+a)
	}
	return env
}

// newEtcdClient returns a quiet v3 client of endpoints, closed in
// t.Cleanup.
func newEtcdClient(t testing.TB, endpoints []string) *clientv3.Client {
	t.Helper()
	cli, err := dialEtcd(endpoints)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// dialEtcd returns a v3 client of endpoints that logs nothing.
func dialEtcd(endpoints []string) (*clientv3.Client, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client of %v: %w", endpoints, err)
	}
	return cli, nil
}

// tail returns the last n lines of b.
func tail(b []byte, n int) []byte {
	b = bytes.TrimRight(b, "\n")
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == '\n' {
			if n--; n == 0 {
				return b[i+1:]
			}
		}
	}
	return b
}

// logWriter writes log lines into a test's log.
type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// AddEtcdUser adds user (with password) to etcd through cli, with a role
// of the same name that may read the keys under each of readPrefixes (none:
// nothing). Add users before EnableEtcdAuth, or through a root client.
func AddEtcdUser(t testing.TB, cli *clientv3.Client, user, password string, readPrefixes ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	steps := []func() error{
		func() error { _, err := cli.UserAdd(ctx, user, password); return err },
		func() error { _, err := cli.RoleAdd(ctx, user); return err },
		func() error { _, err := cli.UserGrantRole(ctx, user, user); return err },
	}
	for _, p := range readPrefixes {
		steps = append(steps, func() error {
			_, err := cli.RoleGrantPermission(ctx, user, p, clientv3.GetPrefixRangeEnd(p), clientv3.PermissionType(clientv3.PermRead))
			return err
		})
	}
	for _, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("etcd user %s: %v", user, err)
		}
	}
}

// EnableEtcdAuth adds the user root (etcd's all-powerful role) with
// password and turns authentication on: from then on, cli is refused.
func EnableEtcdAuth(t testing.TB, cli *clientv3.Client, password string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, step := range []func() error{
		func() error { _, err := cli.UserAdd(ctx, "root", password); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := cli.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatalf("etcd auth: %v", err)
		}
	}
}
