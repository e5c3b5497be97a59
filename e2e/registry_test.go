package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
)

// Bounds of the registry tests' waits; like the others, they only bound
// failures.
const (
	regWait  = 15 * time.Second // until a record or event is there
	listWait = 20 * time.Second // one run of "zmq-proxy list"
	etcdCall = 5 * time.Second  // one etcd request from the test
)

// recordsPrefix is where the proxies' records live (the default prefix).
const recordsPrefix = "/zmq-proxy/proxies/"

// record is a proxy's registration as "zmq-proxy list --json" prints it
// and as it is stored in etcd: the documented JSON, decoded here on its
// own rather than with the registry package, so that a change of the
// format shows.
type record struct {
	ID         string    `json:"id"`
	Kind       string    `json:"kind"`
	Host       string    `json:"host"`
	Frontend   string    `json:"frontend"`
	Backend    string    `json:"backend"`
	Publisher  string    `json:"publisher"`
	Started    time.Time `json:"started"`
	Generation int64     `json:"generation"`
}

// ours skips the test with the reference proxy, which has no registry and
// no local publisher mode; called first, before anything is started.
func ours(t *testing.T) {
	t.Helper()
	if isRef() {
		t.Skipf("ZP_REF=%s: cproxy has no registry and no local publisher mode", refMode)
	}
	needPython(t)
}

// etcdURL is the -u value for an in-process etcd.
func etcdURL(e *testutil.EmbeddedEtcd) string {
	return "zmq+etcd://" + strings.TrimPrefix(e.Endpoints()[0], "http://") + "/"
}

// etcdClient is a quiet v3 client of the etcd on addr (host:port), and a
// function that closes it (its watches first), also called in t.Cleanup.
func etcdClient(t *testing.T, addr string) (*clientv3.Client, func()) {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{"http://" + addr},
		DialTimeout: etcdCall,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatalf("etcd client of %s: %v", addr, err)
	}
	var once sync.Once
	closeCli := func() { once.Do(func() { cli.Close() }) }
	t.Cleanup(closeCli)
	return cli, closeCli
}

// registration is what a proxy logged when it registered.
type registration struct {
	key   string
	id    string
	lease clientv3.LeaseID
	at    time.Time // the log line's time
}

// waitRegistered waits for the proxy's msg=<msg> line ("registered" or
// "registered again") and returns its key, record id and lease.
func (p *proxy) waitRegistered(t *testing.T, msg string, kvs ...string) registration {
	t.Helper()
	kv := p.waitLog(t, regWait, msg, kvs...)
	id, ok := strings.CutPrefix(kv["key"], recordsPrefix)
	if !ok || id == "" {
		t.Fatalf("%s with key=%q, want %s<id>", msg, kv["key"], recordsPrefix)
	}
	lease, err := strconv.ParseUint(kv["lease"], 16, 64)
	if err != nil {
		t.Fatalf("%s with lease=%q: %v", msg, kv["lease"], err)
	}
	return registration{key: kv["key"], id: id, lease: clientv3.LeaseID(lease), at: logTime(kv)}
}

// waitReregistered waits until the proxy has registered on a lease other
// than old, and returns that registration.
func (p *proxy) waitReregistered(t *testing.T, old clientv3.LeaseID) registration {
	t.Helper()
	oldHex := strconv.FormatUint(uint64(old), 16)
	kv := p.waitLogFunc(t, regWait, "a registration on a new lease", func(kv map[string]string) bool {
		return (kv["msg"] == "registered" || kv["msg"] == "registered again") && kv["lease"] != oldHex
	})
	return p.waitRegistered(t, kv["msg"], "lease", kv["lease"])
}

// wantRecord checks a record against what the proxy logged at its start.
func (p *proxy) wantRecord(t *testing.T, r record, kind, host string) {
	t.Helper()
	want := record{ID: r.ID, Kind: kind, Host: host, Frontend: p.frontend, Backend: p.backend, Publisher: p.publisher}
	got := r
	got.Started, got.Generation = time.Time{}, 0
	if got != want {
		t.Errorf("record %s: got %+v, want %+v (the addresses the proxy logged)", r.ID, got, want)
	}
	if r.Started.IsZero() || r.Generation == 0 {
		t.Errorf("record %s: started=%v generation=%d, want both set", r.ID, r.Started, r.Generation)
	}
}

// listRecords runs "zmq-proxy list --json" with args and returns the
// records it printed, by id.
func listRecords(t *testing.T, args ...string) map[string]record {
	t.Helper()
	out := runList(t, append([]string{"--json"}, args...)...)
	recs := map[string]record{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		var r record
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("list --json printed %q: %v", l, err)
		}
		recs[r.ID] = r
	}
	return recs
}

// runList runs "zmq-proxy list" with args, fails the test unless it exits
// 0, and returns its standard output.
func runList(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), listWait)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, append([]string{"list"}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("zmq-proxy list %v: %v\nstdout:\n%s\nstderr:\n%s", args, err, out, stderr.String())
	}
	return string(out)
}

// regEvent is one change under the records' prefix, seen by a regWatch.
type regEvent struct {
	at  time.Time
	put bool // else a delete
	id  string
	rec record // for a put
}

// regWatch records every change of the registered proxies, with the time
// the test saw it, from an etcd watch that starts right after a listing
// (whose records count as puts), so that nothing is missed.
type regWatch struct {
	mu      sync.Mutex
	events  []regEvent
	changed chan struct{} // closed and replaced on every event
	err     error         // why the watch ended early
	stop    func()        // ends the watch and waits for it; safe twice
}

func watchRecords(t *testing.T, cli *clientv3.Client) *regWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	gctx, gcancel := context.WithTimeout(ctx, etcdCall)
	resp, err := cli.Get(gctx, recordsPrefix, clientv3.WithPrefix())
	gcancel()
	if err != nil {
		cancel()
		t.Fatalf("list the records: %v", err)
	}
	w := &regWatch{changed: make(chan struct{})}
	now := time.Now()
	for _, kv := range resp.Kvs {
		w.add(t, regEvent{at: now, put: true}, kv.Key, kv.Value)
	}
	done := make(chan struct{})
	wch := cli.Watch(ctx, recordsPrefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
	go func() { // owned by the cleanup, which cancels it and waits
		defer close(done)
		for wr := range wch {
			if err := wr.Err(); err != nil {
				w.mu.Lock()
				w.err = err
				w.mu.Unlock()
				return
			}
			now := time.Now()
			for _, ev := range wr.Events {
				w.add(t, regEvent{at: now, put: ev.Type == clientv3.EventTypePut}, ev.Kv.Key, ev.Kv.Value)
			}
		}
	}()
	var once sync.Once
	w.stop = func() {
		once.Do(func() {
			cancel()
			<-done
		})
	}
	t.Cleanup(w.stop)
	return w
}

func (w *regWatch) add(t *testing.T, ev regEvent, key, value []byte) {
	ev.id = strings.TrimPrefix(string(key), recordsPrefix)
	if ev.put {
		if err := json.Unmarshal(value, &ev.rec); err != nil {
			t.Errorf("record %s: %q: %v", key, value, err)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.events = append(w.events, ev)
	close(w.changed)
	w.changed = make(chan struct{})
}

// wait returns the first event for id of the given kind, waiting for it at
// most timeout.
func (w *regWatch) wait(t *testing.T, timeout time.Duration, id string, put bool) regEvent {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		w.mu.Lock()
		for _, ev := range w.events {
			if ev.id == id && ev.put == put {
				w.mu.Unlock()
				return ev
			}
		}
		changed, err := w.changed, w.err
		w.mu.Unlock()
		if err != nil {
			t.Fatalf("registry watch ended: %v", err)
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("no %s of record %s within %v; events: %v", putOrDelete(put), id, timeout, w.list())
		}
	}
}

// count is the number of events for id of the given kind so far.
func (w *regWatch) count(id string, put bool) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, ev := range w.events {
		if ev.id == id && ev.put == put {
			n++
		}
	}
	return n
}

func (w *regWatch) list() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for _, ev := range w.events {
		out = append(out, ev.at.Format("15:04:05.000")+" "+putOrDelete(ev.put)+" "+ev.id)
	}
	return out
}

func putOrDelete(put bool) string {
	if put {
		return "put"
	}
	return "delete"
}

// grantedTTL is the TTL etcd granted the lease.
func grantedTTL(t *testing.T, cli *clientv3.Client, lease clientv3.LeaseID) time.Duration {
	t.Helper()
	return time.Duration(timeToLive(t, cli, lease).GrantedTTL) * time.Second
}

// timeToLive asks etcd about lease.
func timeToLive(t *testing.T, cli *clientv3.Client, lease clientv3.LeaseID) *clientv3.LeaseTimeToLiveResponse {
	t.Helper()
	resp, err := cli.TimeToLive(etcdCtx(t), lease)
	if err != nil {
		t.Fatalf("lease %x: %v", lease, err)
	}
	return resp
}

// etcdCtx bounds one etcd call by etcdCall.
func etcdCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), etcdCall)
	t.Cleanup(cancel)
	return ctx
}

// Expiry bound after a kill -9, over the granted TTL. The record goes when
// etcd expires the lease, at most a TTL after the last keep-alive, which
// came before the kill; etcd's lessor looks for expired leases every
// 500 ms; and the revocation is one raft round (a WAL fsync) before the
// watch event reaches the test. 500 ms for the lessor's tick and 1 s for
// the rest on a loaded 2-core machine.
const expirySlack = 1500 * time.Millisecond

// The registry with no -u: the first proxy starts an embedded etcd on
// --etcd-addr, the second uses it; both are listed; a clean stop removes a
// record at once, a kill -9 lets it expire within its TTL; and the first
// proxy's record stays throughout.
func TestRegistryEmbeddedEtcd(t *testing.T) {
	ours(t)
	etcdAddr := freeAddr(t)
	embedded := func(name string, more ...string) proxyOpts {
		return proxyOpts{
			registry: []string{"--etcd-addr", etcdAddr, "--state-dir", t.TempDir()},
			args:     append([]string{"--name", name}, more...),
		}
	}

	a := startProxy(t, embedded("node-a"))
	if kv := a.waitLog(t, regWait, "started embedded etcd"); kv["addr"] != etcdAddr {
		t.Fatalf("A started its embedded etcd on %s, want --etcd-addr %s", kv["addr"], etcdAddr)
	}
	regA := a.waitRegistered(t, "registered")
	cli, closeCli := etcdClient(t, etcdAddr)
	w := watchRecords(t, cli)

	recs := listRecords(t, "--etcd-addr", etcdAddr)
	if len(recs) != 1 {
		t.Fatalf("list: got %d records %v, want 1 (A's)", len(recs), recs)
	}
	a.wantRecord(t, recs[regA.id], "double-router", "node-a")
	table := runList(t, "--etcd-addr", etcdAddr)
	for _, s := range []string{regA.id, "double-router", "node-a", a.frontend, a.backend, a.publisher} {
		if !strings.Contains(table, s) {
			t.Errorf("list's table lacks %q:\n%s", s, table)
		}
	}

	// B finds A's etcd and registers there. --target-expire 2 for the
	// kill -9 below (B's second run), so that the test is short.
	b := startProxy(t, embedded("node-b", "--target-expire", "2"))
	if kv := b.waitLog(t, regWait, "using etcd"); kv["addr"] != etcdAddr {
		t.Fatalf("B uses the etcd on %s, want %s", kv["addr"], etcdAddr)
	}
	regB := b.waitRegistered(t, "registered")
	for _, l := range strings.Split(b.log.String(), "\n") {
		if parseLogLine(l)["msg"] == "started embedded etcd" {
			t.Fatalf("B started an etcd of its own: %s", l)
		}
	}
	recs = listRecords(t, "--etcd-addr", etcdAddr)
	if len(recs) != 2 {
		t.Fatalf("list: got %d records %v, want 2 (A's and B's)", len(recs), recs)
	}
	a.wantRecord(t, recs[regA.id], "double-router", "node-a")
	b.wantRecord(t, recs[regB.id], "double-router", "node-b")

	// SIGTERM: B revokes its lease; the record is gone at once.
	sigAt := time.Now()
	took, inTime := b.signal(t, syscall.SIGTERM)
	b.checkExit0(t, syscall.SIGTERM, took, inTime)
	exitAt := sigAt.Add(took)
	gone := w.wait(t, regWait, regB.id, false)
	t.Logf("SIGTERM: B's record deleted %v after the signal, %v after B's exit (negative: before it)",
		gone.at.Sub(sigAt).Round(time.Millisecond), gone.at.Sub(exitAt).Round(time.Millisecond))
	if d := gone.at.Sub(exitAt); d > time.Second {
		t.Errorf("B's record deleted %v after B exited on SIGTERM, want within 1s", d)
	}

	// kill -9: nothing revokes the lease; the record expires with it.
	b2 := startProxy(t, embedded("node-b", "--target-expire", "2"))
	regB2 := b2.waitRegistered(t, "registered")
	ttl := grantedTTL(t, cli, regB2.lease)
	if ttl != 2*time.Second {
		t.Errorf("B's lease: granted TTL %v, want 2s (--target-expire 2)", ttl)
	}
	w.wait(t, regWait, regB2.id, true)
	bound := ttl + expirySlack
	killAt := time.Now()
	b2.signal(t, syscall.SIGKILL)
	gone = w.wait(t, bound+regWait, regB2.id, false)
	expired := gone.at.Sub(killAt)
	t.Logf("kill -9: B's record expired %v after the kill (granted TTL %v, asserted bound %v)",
		expired.Round(time.Millisecond), ttl, bound)
	if expired > bound {
		t.Errorf("B's record expired %v after kill -9, want within %v (TTL %v + %v)", expired, bound, ttl, expirySlack)
	}

	// A's record stayed throughout, and is all that is left.
	if w.count(regA.id, false) != 0 || w.count(regA.id, true) != 1 {
		t.Errorf("A's record changed while A ran, want one put and no delete: %v", w.list())
	}
	recs = listRecords(t, "--etcd-addr", etcdAddr)
	if _, ok := recs[regA.id]; !ok || len(recs) != 1 {
		t.Errorf("list after B went: got %v, want only A's record %s", recs, regA.id)
	}
	a.alive(t)

	// SIGTERM A: it deregisters, stops the etcd it started, and exits 0.
	// The test's own etcd client goes first: with a client's stream open,
	// A takes 7 s to exit (TestEmbeddedEtcdOwnerExitsPromptly).
	w.stop()
	closeCli()
	took, inTime = a.signal(t, syscall.SIGTERM)
	a.checkExit0(t, syscall.SIGTERM, took, inTime)
	a.waitLog(t, regWait, "deregistered", "key", regA.key)
	if c, err := net.DialTimeout("tcp", etcdAddr, time.Second); err == nil {
		c.Close()
		t.Errorf("something still listens on %s after A, which started the embedded etcd there, exited", etcdAddr)
	}
}

// The embedded etcd's peer port must follow --etcd-addr, not be fixed:
// with no -u, a proxy given --etcd-addr 127.0.0.1:<port> takes the peer
// address 127.0.0.1:2380 whatever the port (internal/etcdserver's default),
// though actors.RegistryConfig.EmbeddedAddr says "its peer port is the
// next one". So two registries on one host (or an embedded one beside a
// real etcd on 2379/2380, the reason to move --etcd-addr at all) cannot
// both start, and these tests cannot avoid a fixed port.
func TestEmbeddedEtcdPeerPortFollowsEtcdAddr(t *testing.T) {
	ours(t)
	a := startProxy(t, proxyOpts{registry: []string{"--etcd-addr", freeAddr(t), "--state-dir", t.TempDir()}})
	kv := a.waitLog(t, regWait, "started embedded etcd")
	_, clientPort, _ := net.SplitHostPort(kv["addr"])
	_, peerPort, _ := net.SplitHostPort(kv["peer_addr"])
	t.Logf("embedded etcd: addr=%s peer_addr=%s", kv["addr"], kv["peer_addr"])
	if peerPort == "2380" && clientPort != "2379" {
		t.Errorf("embedded etcd on --etcd-addr %s took the fixed peer address %s, want a peer port that "+
			"follows --etcd-addr (the next one, as actors.RegistryConfig documents) or a free one",
			kv["addr"], kv["peer_addr"])
	}

	// The consequence: a second registry on this host cannot start.
	// startProxy would give up at the moment the proxy does (15 s).
	addr2 := freeAddr(t)
	bp := &proxy{log: newLineBuffer()}
	bp.process = startProcess(t, exec.Command(binPath, "-H", "127.0.0.1", "--etcd-addr", addr2,
		"--state-dir", t.TempDir(), "--metrics-addr", "127.0.0.1:0"), bp.log, bp.log)
	t.Cleanup(func() { bp.cleanup(t) })
	// The product waits 15 s (regWait) before it gives up; wait twice that.
	testutil.CheckFor(t, 2*regWait, func() error {
		if l, _ := bp.log.since(0); strings.Contains(strings.Join(l, "\n"), `msg="proxy started"`) {
			return nil
		}
		if bp.exited() {
			bp.stopped = true
			t.Fatalf("a second proxy with its own embedded etcd on --etcd-addr %s did not start: %v\nlog:\n%s",
				addr2, bp.waitErr, bp.log)
		}
		return fmt.Errorf("a second proxy with --etcd-addr %s has not started\nlog:\n%s", addr2, bp.log)
	})
}

// A proxy that started the embedded etcd must exit promptly on SIGTERM
// even while a registry client (here "zmq-proxy list -w"; in production
// the other proxies and the local publisher proxies on the host) holds a
// watch or keep-alive stream on that etcd. It takes 7 s: etcd's
// embed.Etcd.Close stops its gRPC server gracefully, which waits for every
// open stream, up to etcd's request timeout (5 s + 2 election timeouts),
// before it stops it hard. The helpers' stopTimeout (5 s) kills it first.
func TestEmbeddedEtcdOwnerExitsPromptly(t *testing.T) {
	ours(t)
	etcdAddr := freeAddr(t)
	a := startProxy(t, proxyOpts{registry: []string{"--etcd-addr", etcdAddr, "--state-dir", t.TempDir()}})
	a.waitLog(t, regWait, "started embedded etcd")
	reg := a.waitRegistered(t, "registered")
	l := startLister(t, "--etcd-addr", etcdAddr, "-w")
	l.waitLine(t, "the table's row of "+reg.id, func(s string) bool { return strings.HasPrefix(s, reg.id+" ") })

	took, inTime := a.signal(t, syscall.SIGTERM)
	t.Logf("SIGTERM with a watcher connected: exit after %v (killed: %v)", took.Round(time.Millisecond), !inTime)
	a.checkExit0(t, syscall.SIGTERM, took, inTime)
	l.waitLine(t, "- "+reg.id, func(s string) bool { return untimed(s) == "- "+reg.id })
}

// lister is a running "zmq-proxy list -w".
type lister struct {
	*process
	out, errOut *lineBuffer
}

func startLister(t *testing.T, args ...string) *lister {
	t.Helper()
	l := &lister{out: newLineBuffer(), errOut: newLineBuffer()}
	l.process = startProcess(t, exec.Command(binPath, append([]string{"list"}, args...)...), l.out, l.errOut)
	t.Cleanup(l.kill)
	return l
}

// waitLine waits for an output line for which match holds and returns it.
func (l *lister) waitLine(t *testing.T, what string, match func(string) bool) string {
	t.Helper()
	var line string
	err := l.out.follow(regWait, l.done, func(s string) bool { line = s; return match(s) })
	switch {
	case errors.Is(err, errFollowExited):
		t.Fatalf("list exited (%v) before printing %s\nstdout:\n%s\nstderr:\n%s", l.waitErr, what, l.out, l.errOut)
	case err != nil:
		t.Fatalf("list did not print %s within %v\nstdout:\n%s\nstderr:\n%s", what, regWait, l.out, l.errOut)
	}
	return line
}

// stop ends the lister with SIGTERM and checks that it exits 0.
func (l *lister) stop(t *testing.T) {
	t.Helper()
	if err := l.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("SIGTERM to list: %v", err)
	}
	select {
	case <-l.done:
	case <-time.After(stopTimeout):
		t.Errorf("list -w did not exit within %v of SIGTERM", stopTimeout)
		return
	}
	if l.waitErr != nil {
		t.Errorf("list -w exited with %v after SIGTERM, want status 0\nstderr:\n%s", l.waitErr, l.errOut)
	}
}

// jsonEvent is one line of "list -w --json".
type jsonEvent struct {
	Event  string `json:"event"`
	Record record `json:"record"`
}

// waitEvent waits for "list -w --json" to print the event for id.
func (l *lister) waitEvent(t *testing.T, event, id string) record {
	t.Helper()
	var got jsonEvent
	l.waitLine(t, event+" of "+id, func(s string) bool {
		var ev jsonEvent
		if err := json.Unmarshal([]byte(s), &ev); err != nil {
			t.Fatalf("list -w --json printed %q: %v", s, err)
		}
		got = ev
		return ev.Event == event && ev.Record.ID == id
	})
	return got.Record
}

// "list -w" prints the records there at its start, then a put when a proxy
// starts and a delete when it stops, as JSON and as text.
func TestListWatch(t *testing.T) {
	ours(t)
	e := testutil.Embedded(t)
	reg := []string{"-u", etcdURL(e)}
	first := startProxy(t, proxyOpts{registry: reg, args: []string{"--name", "first"}})
	regFirst := first.waitRegistered(t, "registered")

	js := startLister(t, "-u", etcdURL(e), "-w", "--json")
	text := startLister(t, "-u", etcdURL(e), "-w")
	// The records there at the start: puts in JSON, the table in text.
	first.wantRecord(t, js.waitEvent(t, "put", regFirst.id), "double-router", "first")
	text.waitLine(t, "the table's header", func(s string) bool { return strings.HasPrefix(s, "ID ") })
	text.waitLine(t, "the table's row of "+regFirst.id, func(s string) bool {
		return strings.HasPrefix(s, regFirst.id+" ") && strings.Contains(s, first.frontend)
	})

	p := startProxy(t, proxyOpts{registry: reg, args: []string{"--name", "second"}})
	regP := p.waitRegistered(t, "registered")
	p.wantRecord(t, js.waitEvent(t, "put", regP.id), "double-router", "second")
	wantPut := strings.Join([]string{"+", regP.id, "double-router", p.frontend, p.backend, p.publisher}, " ")
	text.waitLine(t, "+ "+regP.id, func(s string) bool { return untimed(s) == wantPut })

	took, inTime := p.signal(t, syscall.SIGTERM)
	p.checkExit0(t, syscall.SIGTERM, took, inTime)
	js.waitEvent(t, "delete", regP.id)
	text.waitLine(t, "- "+regP.id, func(s string) bool { return untimed(s) == "- "+regP.id })

	first.alive(t)
	js.stop(t)
	text.stop(t)
	for _, l := range []*lister{js, text} {
		if n := strings.Count(l.out.String(), regFirst.id); n != 1 {
			t.Errorf("list -w printed the first proxy's id %d times, want once:\n%s", n, l.out)
		}
	}
}

// untimed is a change line of list -w without its time, "" when it has
// none: the lines begin with when list saw the change.
func untimed(line string) string {
	at, rest, _ := strings.Cut(line, " ")
	if _, err := time.Parse("2006-01-02T15:04:05.000Z07:00", at); err != nil {
		return ""
	}
	return rest
}

// progress is the last "PROGRESS <sent> <received>" line of a streaming
// peer script.
func (p *peer) progress(t *testing.T) (sent, received int) {
	t.Helper()
	lines, _ := p.out.since(0)
	for i := len(lines) - 1; i >= 0; i-- {
		if rest, ok := strings.CutPrefix(lines[i], "PROGRESS "); ok {
			f := strings.Fields(rest)
			if len(f) != 2 {
				t.Fatalf("%s: bad line %q", p.name, lines[i])
			}
			s, err1 := strconv.Atoi(f[0])
			r, err2 := strconv.Atoi(f[1])
			if err1 != nil || err2 != nil {
				t.Fatalf("%s: bad line %q", p.name, lines[i])
			}
			return s, r
		}
	}
	return 0, 0
}

// waitReceived waits until the streaming script has received at least n.
func (p *peer) waitReceived(t *testing.T, n int) int {
	t.Helper()
	var got int
	testutil.CheckFor(t, peerTimeout, func() error {
		if p.exited() {
			t.Fatalf("%s exited (%v)\n%s", p.name, p.waitErr, p.output())
		}
		if _, got = p.progress(t); got < n {
			return fmt.Errorf("%s: %d received, want at least %d\n%s", p.name, got, n, p.output())
		}
		return nil
	})
	return got
}

// send writes a command line to a streaming script.
func (p *peer) send(t *testing.T, line string) {
	t.Helper()
	if _, err := p.stdin.Write([]byte(line + "\n")); err != nil {
		t.Fatalf("%s: write %q: %v\n%s", p.name, line, err, p.output())
	}
}

// etcd stopped under a running proxy, for longer than the lease's TTL, and
// started again: routing never stops, and the proxy registers again by
// itself under a new lease, which it keeps alive.
func TestRegistryEtcdRestart(t *testing.T) {
	ours(t)
	e := testutil.Embedded(t)
	cli := e.Client(t)
	p := startProxy(t, proxyOpts{registry: []string{"-u", etcdURL(e), "--target-expire", "2"}})
	reg1 := p.waitRegistered(t, "registered")
	rec1 := getRecord(t, cli, reg1.key, reg1.lease)

	s := startPeer(t, "cast_stream.py", p.peerArgs()...)
	s.awaitStep(t, "warm", nil)
	s.proceed(t)
	s.waitReceived(t, 20)

	// Stop waits for etcd's graceful stop, which waits (up to etcd's
	// request timeout, 7 s) for the proxy's keep-alive and watch streams
	// to end, and serves them meanwhile: etcd is gone when Stop returns.
	stopping := time.Now()
	e.Stop()
	stopAt := time.Now()
	_, atStop := s.progress(t)
	lost := p.waitLog(t, regWait, "registration lost, registering again")
	t.Logf("etcd stopped (its Close took %v): the proxy noticed the lost lease %v later",
		stopAt.Sub(stopping).Round(time.Millisecond), logTime(lost).Sub(stopAt).Round(time.Millisecond))
	// Casts go on meanwhile (100 more is half a second of them), and etcd
	// stays down for longer than the TTL (2 s) and the client's check of
	// it (every 500 ms): the scenario, not a wait for something to pass.
	s.waitReceived(t, atStop+100)
	testutil.CheckFor(t, regWait, func() error {
		if down := time.Since(stopAt); down <= 2*time.Second+500*time.Millisecond {
			return fmt.Errorf("etcd down for %v, want longer than the TTL and the client's check", down)
		}
		return nil
	})
	outage := time.Since(stopAt)

	e.Start()
	startAt := time.Now()
	// A new client: the first one's gRPC connection is in its reconnect
	// backoff (seconds, after the outage), which is not what is tested.
	cli = e.Client(t)
	_, atStart := s.progress(t)
	// "registered again" if an attempt failed first, else "registered".
	reg2 := p.waitReregistered(t, reg1.lease)
	t.Logf("etcd down %v, %d casts delivered meanwhile; registered again %v after etcd started",
		outage.Round(time.Millisecond), atStart-atStop, reg2.at.Sub(startAt).Round(time.Millisecond))
	if reg2.key != reg1.key || reg2.lease == reg1.lease {
		t.Errorf("registered again as %s lease %x, want the same key %s on a new lease (not %x)",
			reg2.key, reg2.lease, reg1.key, reg1.lease)
	}
	if rec2 := getRecord(t, cli, reg2.key, reg2.lease); rec2 != rec1 {
		t.Errorf("record after etcd's restart: got %+v, want the same as before %+v", rec2, rec1)
	}
	// The old lease, restored with etcd's data, expires with nobody to
	// keep it alive; the record, on the new lease, stays. And the new
	// lease is kept alive: the record is still there a TTL (and the
	// expiry slack) after the new registration.
	testutil.CheckFor(t, regWait, func() error {
		if ttl := leaseTTL(t, cli, reg1.lease); ttl >= 0 {
			return fmt.Errorf("the old lease %x has %d s to live, want it expired", reg1.lease, ttl)
		}
		return nil
	})
	until := reg2.at.Add(grantedTTL(t, cli, reg2.lease) + expirySlack)
	for {
		getRecord(t, cli, reg2.key, reg2.lease)
		if time.Now().After(until) {
			break
		}
		<-time.After(50 * time.Millisecond)
	}

	s.send(t, "stop")
	res := s.result(t)
	if res["sent"] != res["received"] {
		t.Errorf("casts: %v sent, %v received, want all received", res["sent"], res["received"])
	}
	t.Logf("largest gap between two casts at the server: %v ms", res["max_gap_ms"])
	p.alive(t)
}

// getRecord reads the record under key and checks that it is bound to
// lease.
func getRecord(t *testing.T, cli *clientv3.Client, key string, lease clientv3.LeaseID) record {
	t.Helper()
	resp, err := cli.Get(etcdCtx(t), key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	if len(resp.Kvs) != 1 {
		t.Fatalf("get %s: no record", key)
	}
	kv := resp.Kvs[0]
	if clientv3.LeaseID(kv.Lease) != lease {
		t.Errorf("record %s on lease %x, want %x", key, kv.Lease, lease)
	}
	var r record
	if err := json.Unmarshal(kv.Value, &r); err != nil {
		t.Fatalf("record %s: %q: %v", key, kv.Value, err)
	}
	return r
}

// leaseTTL is a lease's remaining time to live in seconds; -1 once expired.
func leaseTTL(t *testing.T, cli *clientv3.Client, lease clientv3.LeaseID) int64 {
	t.Helper()
	return timeToLive(t, cli, lease).TTL
}
