package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
)

// The TTL and rewrite interval of the Redis tests: short, so that a
// killed proxy's records expire within the test.
const (
	redisExpire = 4 * time.Second
	redisUpdate = 1 * time.Second
	redisWait   = 30 * time.Second // failure bound of the waits below
)

// needPythonRedis fails the test if Debian's python3-redis is missing.
func needPythonRedis(t *testing.T) {
	t.Helper()
	needPython(t)
	needPythonModule(t, "redis", "python3-redis", "python3-redis")
}

// startOurs runs our binary with exactly args and waits for "proxy
// started"; its cleanup stops it with SIGTERM and wants exit status 0.
func startOurs(t *testing.T, args ...string) *proxy {
	t.Helper()
	ours(t)
	needPython(t)
	p := &proxy{log: newLineBuffer()}
	p.process = startProcess(t, exec.Command(binPath, args...), p.log, p.log)
	t.Cleanup(func() { p.cleanup(t) })
	kv := p.waitLog(t, startTimeout, "proxy started")
	p.frontend, p.backend, p.publisher = kv["frontend"], kv["backend"], kv["publisher"]
	p.metrics = strings.TrimSuffix(strings.TrimPrefix(kv["metrics"], "http://"), "/")
	t.Logf("proxy: frontend=%s backend=%s publisher=%s use_pub_sub=%s", p.frontend, p.backend, p.publisher, kv["use_pub_sub"])
	return p
}

func redisURL(r *testutil.Redis) string { return "zmq+redis://" + r.Addr() }

func redisClient(t *testing.T, r *testutil.Redis, password string) *goredis.Client {
	t.Helper()
	c := goredis.NewClient(&goredis.Options{Addr: r.Addr(), Password: password, MaxRetries: -1, Protocol: 2, DisableIdentity: true})
	t.Cleanup(func() { c.Close() })
	return c
}

// writeFile writes text to a new file in a temp dir and returns its path.
func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// timesINI sets zmq_target_expire and zmq_target_update (the latter has
// no flag).
func timesINI(t *testing.T) string {
	return writeFile(t, "times.ini", fmt.Sprintf("[oslo_messaging_zmq]\nzmq_target_expire = %d\nzmq_target_update = %d\n",
		int(redisExpire/time.Second), int(redisUpdate/time.Second)))
}

func hostport(ep string) string { return strings.TrimPrefix(ep, "tcp://") }

// wantSets are the sets docs/protocol.md says a central proxy writes: PUBLISHERS,
// ROUTERS and the liveness set of each member.
func (p *proxy) wantSets() map[string][]string {
	pub := hostport(p.publisher) + "," + hostport(p.frontend)
	router := hostport(p.backend)
	if p.backend == "" {
		router = hostport(p.frontend)
	}
	return map[string][]string{"PUBLISHERS": {pub}, pub: {" "}, "ROUTERS": {router}, router: {" "}}
}

// checkSets checks that Redis holds exactly the sets want, each with a TTL
// in (0, ttl], and no other key.
func checkSets(c *goredis.Client, want map[string][]string, ttl time.Duration) error {
	ctx := context.Background()
	keys, err := c.Keys(ctx, "*").Result()
	if err != nil {
		return err
	}
	if len(keys) != len(want) {
		return fmt.Errorf("keys: got %q, want the %d of %q", keys, len(want), want)
	}
	for key, members := range want {
		if err := testutil.CheckRedisSet(ctx, c, key, members, ttl); err != nil {
			return err
		}
	}
	return nil
}

// noKeys checks that Redis is empty.
func noKeys(c *goredis.Client) error {
	keys, err := c.Keys(context.Background(), "*").Result()
	if err != nil {
		return err
	}
	if len(keys) != 0 {
		return fmt.Errorf("keys: got %q, want none", keys)
	}
	return nil
}

// A central proxy with -u zmq+redis:// writes exactly what
// oslo.messaging's proxy writes; SIGTERM removes it at once; kill -9 lets
// it expire; a restarted Redis has it back within zmq_target_update.
func TestRedisRegistration(t *testing.T) {
	r := testutil.StartRedis(t, testutil.RedisOptions{})
	c := redisClient(t, r, "")
	args := []string{"-c", timesINI(t), "-H", "127.0.0.1", "-u", redisURL(r), "--metrics-addr", "127.0.0.1:0"}

	// Start, and SIGTERM.
	p := startOurs(t, args...)
	p.waitLog(t, redisWait, "registered in redis")
	if err := checkSets(c, p.wantSets(), redisExpire); err != nil {
		t.Fatal(err)
	}
	took, inTime := p.signal(t, syscall.SIGTERM)
	p.checkExit0(t, syscall.SIGTERM, took, inTime)
	if err := noKeys(c); err != nil {
		t.Errorf("after SIGTERM: %v", err)
	}

	// kill -9: the records stay until their TTL passes.
	p = startOurs(t, args...)
	p.waitLog(t, redisWait, "registered in redis")
	if err := checkSets(c, p.wantSets(), redisExpire); err != nil {
		t.Fatal(err)
	}
	p.stopped = true
	killed := time.Now()
	p.kill()
	if err := checkSets(c, p.wantSets(), redisExpire); err != nil {
		t.Errorf("just after kill -9, the records should stand until they expire: %v", err)
	}
	testutil.CheckFor(t, redisWait, func() error { return noKeys(c) })
	gone := time.Since(killed)
	t.Logf("records of the killed proxy expired %v after kill -9 (zmq_target_expire %v)", gone.Round(time.Millisecond), redisExpire)
	if gone > redisExpire+2*time.Second {
		t.Errorf("records expired %v after kill -9, want within zmq_target_expire (%v)", gone, redisExpire)
	}

	// Redis restarted, empty: the records are back within zmq_target_update.
	p = startOurs(t, args...)
	p.waitLog(t, redisWait, "registered in redis")
	r.Restart()
	back := time.Now()
	testutil.CheckFor(t, redisWait, func() error { return checkSets(c, p.wantSets(), redisExpire) })
	took = time.Since(back)
	t.Logf("records back %v after Redis restarted (zmq_target_update %v)", took.Round(time.Millisecond), redisUpdate)
	// One zmq_target_update, and 2 s of slack for a loaded machine: still
	// short of zmq_target_expire, when only a TTL-paced rewrite would do.
	if took > redisUpdate+2*time.Second {
		t.Errorf("records back %v after Redis restarted, want within zmq_target_update (%v)", took, redisUpdate)
	}

	// Redis down a while: routing goes on, the outage is logged once, and
	// the records come back with Redis.
	r.Kill()
	p.waitLog(t, redisWait, "redis unreachable, registering again as soon as it answers")
	res := runPeer(t, "call_reply.py", p.peerArgs()...)
	t.Logf("with Redis down: %v", res)
	r.Start()
	p.waitLog(t, redisWait, "registered in redis again")
	testutil.CheckFor(t, redisWait, func() error { return checkSets(c, p.wantSets(), redisExpire) })
	if n := strings.Count(p.log.String(), "redis unreachable"); n != 1 {
		t.Errorf(`"redis unreachable" logged %d times in one outage, want 1`, n)
	}
	// Nothing else said it either (go-redis logs each failed dial by
	// itself unless told otherwise): every line is one of ours.
	lines, _ := p.log.since(0)
	for _, l := range lines {
		if kv := parseLogLine(l); kv["msg"] == "" || kv["level"] == "" {
			t.Errorf("a log line that is not the proxy's: %q", l)
		}
	}
	p.alive(t)
}

// A local publisher proxy with a zmq+redis:// URL finds the central proxy
// in PUBLISHERS and fanout flows through it.
func TestRedisLocalProxyFindsCentral(t *testing.T) {
	r := testutil.StartRedis(t, testutil.RedisOptions{})
	central := startOurs(t, "-c", timesINI(t), "-H", "127.0.0.1", "-u", redisURL(r), "--metrics-addr", "127.0.0.1:0")
	central.waitLog(t, redisWait, "registered in redis")
	local := startOurs(t, "-lp", "-H", "127.0.0.1", "-u", redisURL(r), "--metrics-addr", "127.0.0.1:0")
	local.waitLog(t, redisWait, "subscribing to central publisher", "publisher", central.publisher)
	local.waitExactly(t, 1, peers, "socket", "subscriber")
	s := startPeer(t, "fanout_nodes.py", "--central", central.frontend, "--node", local.publisher,
		"--rounds", "20", "--timeout", fmt.Sprint(int(peerTimeout/time.Second)))
	s.awaitStep(t, "warm", nil)
	s.proceed(t)
	s.awaitStep(t, "done", nil)
	s.proceed(t)
	res := s.result(t)
	n, _ := res["published"].(float64)
	if n == 0 {
		t.Fatalf("fanout_nodes.py published nothing: %v", res)
	}
	local.waitAtLeast(t, n, published, "socket", "publisher")
	central.alive(t)
	local.alive(t)
}

// runOslo runs oslo_redis.py in mode against the proxies in Redis.
func runOslo(t *testing.T, r *testutil.Redis, mode string, more ...string) map[string]any {
	t.Helper()
	needPythonRedis(t)
	args := append([]string{"--redis", r.Addr(), "--mode", mode, "--timeout", fmt.Sprint(int(peerTimeout / time.Second))}, more...)
	return runPeer(t, "oslo_redis.py", args...)
}

// Services that behave like oslo.messaging's, reading the proxy's
// addresses from Redis: call, cast, fanout and notify, byte for byte,
// published with use_pub_sub = true.
func TestOsloServicesThroughRedis(t *testing.T) {
	r := testutil.StartRedis(t, testutil.RedisOptions{})
	p := startOurs(t, "-H", "127.0.0.1", "-u", redisURL(r), "--use-pub-sub", "--metrics-addr", "127.0.0.1:0")
	p.waitLog(t, redisWait, "registered in redis")
	res := runOslo(t, r, "pubsub")
	if res["calls"] != 1.0 || res["casts"] != 1.0 || res["published_fanouts"] != 1.0 {
		t.Errorf("oslo_redis.py: got %v, want a call, a cast and a published fanout", res)
	}
	p.waitAtLeast(t, 2, published, "socket", "publisher") // the fanout and the notification
	p.alive(t)
}

// Router-only mode (use_pub_sub = false): no PUB is bound, nothing is
// published, and a fanout or notification sent once per identity reaches
// each server exactly once.
func TestOsloRouterOnlyThroughRedis(t *testing.T) {
	r := testutil.StartRedis(t, testutil.RedisOptions{})
	p := startOurs(t, "-H", "127.0.0.1", "-u", redisURL(r), "--use-pub-sub=false", "--metrics-addr", "127.0.0.1:0")
	if p.publisher != "" {
		t.Fatalf("router-only proxy logged publisher=%s, want no PUB", p.publisher)
	}
	p.waitLog(t, redisWait, "registered in redis")
	routed0 := p.metric(t, routed, "socket", "backend")
	res := runOslo(t, r, "router")
	if res["routed_fanouts"] != 2.0 {
		t.Errorf("oslo_redis.py: got %v, want 2 routed fanouts (one per server)", res)
	}
	samples := p.scrape(t)
	for name := range samples {
		samples.Each(name, func(labels map[string]string, v float64) {
			if labels["socket"] == "publisher" {
				t.Errorf("router-only proxy has a publisher socket in /metrics: %s%v = %v", name, labels, v)
			}
		})
	}
	if n := samples.Sum(published); n != 0 {
		t.Errorf("%s: got %v, want 0", published, n)
	}
	// CALL, CAST, two fanouts and a notification, besides the probes.
	if n := samples.Sum(routed, "socket", "backend") - routed0; n < 5 {
		t.Errorf("%s{socket=backend}: rose by %v, want at least 5", routed, n)
	}
	p.alive(t)
}

// use_pub_sub not set: a router-only client and a pub/sub client through
// the same proxy both reach their servers.
func TestOsloMixedThroughRedis(t *testing.T) {
	r := testutil.StartRedis(t, testutil.RedisOptions{})
	p := startOurs(t, "-H", "127.0.0.1", "-u", redisURL(r), "--metrics-addr", "127.0.0.1:0")
	p.waitLog(t, redisWait, "registered in redis")
	res := runOslo(t, r, "mixed")
	if res["routed_fanouts"] != 2.0 || res["published_fanouts"] != 1.0 {
		t.Errorf("oslo_redis.py: got %v, want 2 routed fanouts and 1 published", res)
	}
	p.alive(t)
}

// zmq-proxy -c with a file written the way oslo.messaging documents its
// ZeroMQ driver starts, and registers in Redis with the file's ports and
// password; keys it does not use are ignored.
func TestOsloConfigFileRegistersInRedis(t *testing.T) {
	const password = "s3cret"
	r := testutil.StartRedis(t, testutil.RedisOptions{Password: password})
	c := redisClient(t, r, password)
	ports := freePorts(t, 3)
	conf := writeFile(t, "oslo.conf", fmt.Sprintf(`[DEFAULT]
transport_url = zmq+redis://127.0.0.1:%d
debug = True

[oslo_messaging_zmq]
rpc_zmq_host = 127.0.0.1
rpc_zmq_matchmaker = redis
use_router_proxy = true
use_pub_sub = true
zmq_target_expire = %d
zmq_target_update = %d

[zmq_proxy_opts]
host = 127.0.0.1
frontend_port = %s
backend_port = %s
publisher_port = %s

[matchmaker_redis]
host = 127.0.0.1
port = 1
password = %s
`, r.Port(), int(redisExpire/time.Second), int(redisUpdate/time.Second), ports[0], ports[1], ports[2], password))
	p := startOurs(t, "-c", conf, "--metrics-addr", "127.0.0.1:0", "-d")
	p.waitLog(t, redisWait, "registered in redis")
	want := map[string][]string{
		"PUBLISHERS":            {"127.0.0.1:" + ports[2] + ",127.0.0.1:" + ports[0]},
		"ROUTERS":               {"127.0.0.1:" + ports[1]},
		"127.0.0.1:" + ports[1]: {" "},
		"127.0.0.1:" + ports[2] + ",127.0.0.1:" + ports[0]: {" "},
	}
	if err := checkSets(c, want, redisExpire); err != nil {
		t.Error(err)
	}
	p.waitLog(t, redisWait, "ignoring unknown configuration key", "key", "[oslo_messaging_zmq] use_router_proxy")
	if strings.Contains(p.log.String(), password) {
		t.Errorf("the Redis password is in the log:\n%s", p.log)
	}
	p.alive(t)

	// The file: a url zmq-proxy once refused, overridden by -u.
	bad := writeFile(t, "bad.conf", "[zmq_proxy_opts]\nurl = rabbit://guest@r:5672/\n")
	q := startOurs(t, "-c", bad, "-H", "127.0.0.1", "-u", "zmq://", "--metrics-addr", "127.0.0.1:0")
	q.waitLog(t, redisWait, "registry disabled")
	q.alive(t)
}
