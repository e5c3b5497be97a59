package e2e

// Issue 16's attacks on the handshakes, the secrets and the HTTP
// endpoints, against the real binary. Each test logs its figure (so that
// a run with ZP_BIN set to an older binary gives the "before") and
// asserts it with a margin for a shared 2-core machine.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/crypto/nacl/box"
	"golang.org/x/crypto/salsa20/salsa"
	"golang.org/x/time/rate"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
	"github.com/zmq-proxy/zmq-proxy/transport/security"
)

const authFlood = "zmqproxy_auth_flood_total"

// procCPU is a process's user+system time.
func procCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+2:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}

// zmtpGreeting is a ZMTP 3.0 client greeting for mechanism.
func zmtpGreeting(mechanism string) []byte {
	g := make([]byte, 64)
	g[0], g[9], g[10] = 0xFF, 0x7F, 3
	copy(g[12:32], mechanism)
	return g
}

func cmdFrame(body []byte) []byte {
	if len(body) > 255 {
		f := []byte{0x06}
		f = binary.BigEndian.AppendUint64(f, uint64(len(body)))
		return append(f, body...)
	}
	return append([]byte{0x04, byte(len(body))}, body...)
}

// flooder runs an attack at a fixed rate until stopped.
type flooder struct {
	n      atomic.Int64
	wg     sync.WaitGroup
	cancel context.CancelFunc
}

// startFlood runs attack at most perSecond times a second from workers
// goroutines until stop (at the latest when the test ends).
func startFlood(t *testing.T, perSecond, workers int, attack func()) *flooder {
	ctx, cancel := context.WithCancel(context.Background())
	f := &flooder{cancel: cancel}
	lim := rate.NewLimiter(rate.Limit(perSecond), workers)
	for range workers {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			for lim.Wait(ctx) == nil {
				attack()
				f.n.Add(1)
			}
		}()
	}
	t.Cleanup(func() { f.stop() })
	return f
}

// waitCount waits until the flood has run n attacks.
func (f *flooder) waitCount(t *testing.T, n int64) {
	t.Helper()
	testutil.CheckFor(t, time.Minute, func() error {
		if got := f.n.Load(); got < n {
			return fmt.Errorf("flood at %d attacks, waiting for %d", got, n)
		}
		return nil
	})
}

// stop ends the flood and returns how many attacks it ran.
func (f *flooder) stop() int64 {
	f.cancel()
	f.wg.Wait()
	return f.n.Load()
}

// dialHandshake connects to endpoint and runs the handshake as typ.
func dialHandshake(endpoint string, m security.Mechanism, typ, id string) (*security.Session, time.Duration, error) {
	return dialHandshakeFrom("", endpoint, m, typ, id)
}

// legitSource is where the legitimate peers of the flood tests connect
// from: the floods come from 127.0.0.1, and a user is on another address
// than its attacker (the per-source handshake cap, --max-handshakes-per-source,
// closes the flood's own oldest handshakes, as it should; from one address
// it would close the user's too).
const legitSource = "127.0.0.2"

// dialHandshakeFrom is dialHandshake from the local address src ("" = any).
func dialHandshakeFrom(src, endpoint string, m security.Mechanism, typ, id string) (*security.Session, time.Duration, error) {
	start := time.Now()
	d := net.Dialer{Timeout: 5 * time.Second}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c, err := d.Dial("tcp", strings.TrimPrefix(endpoint, "tcp://"))
	if err != nil {
		return nil, 0, err
	}
	c.SetDeadline(time.Now().Add(15 * time.Second))
	s, err := security.Handshake(c, m, typ, []byte(id), 0)
	took := time.Since(start)
	if err != nil {
		c.Close()
		return nil, took, err
	}
	c.SetDeadline(time.Time{})
	return s, took, nil
}

// PLAIN HELLOs at 2,900/s, each connection closed 1 ms after its HELLO:
// a correct user still logs in, five times in a row, each within 1 s
// (asserted at 2 s: the flood's own client shares the test's 2 cores).
// Before: 0 of 5 logins in 15 s.
func TestPlainLoginDuringHelloFlood(t *testing.T) {
	users := plainUsersFile(t, "s3cret", bcrypt.DefaultCost, "nova")
	p := startProxy(t, proxyOpts{args: []string{"--plain-users", users}, plain: true})
	fe := strings.TrimPrefix(p.frontend, "tcp://")
	hello := append(zmtpGreeting("PLAIN"), cmdFrame(append([]byte("\x05HELLO\x04nova\x05guess"), []byte{}...))...)

	cli, err := security.PlainClient("nova", "s3cret")
	if err != nil {
		t.Fatal(err)
	}
	// A login's time without the flood: on a loaded machine bcrypt alone
	// may take longer than the 1 s the issue asks for.
	var idle time.Duration
	for range 3 {
		s, d, err := dialHandshake(p.frontend, cli, "DEALER", "")
		if err != nil {
			t.Fatalf("login without the flood: %v", err)
		}
		s.Conn.Close()
		idle = max(idle, d)
	}
	cpu0 := procCPU(t, p.pid())
	start := time.Now()
	f := startFlood(t, 2900, 64, func() {
		c, err := net.Dial("tcp", fe)
		if err != nil {
			return
		}
		c.Write(hello)
		time.AfterFunc(time.Millisecond, func() { c.Close() })
	})
	// Let the flood fill every queue first: about a second of it.
	f.waitCount(t, 2900)
	var took []time.Duration
	var failed []error
	for range 5 {
		s, d, err := dialHandshakeFrom(legitSource, p.frontend, cli, "DEALER", "")
		if err != nil {
			failed = append(failed, err)
			continue
		}
		s.Conn.Close()
		took = append(took, d)
	}
	sent := f.stop()
	elapsed := time.Since(start)
	cpu := procCPU(t, p.pid()) - cpu0
	slices.Sort(took)
	t.Logf("PLAIN flood: %d HELLOs in %v (%.0f/s); logins %d of 5, times %v (without the flood: at most %v); proxy CPU %v in %v (%.2f cores)",
		sent, elapsed.Round(time.Millisecond), float64(sent)/elapsed.Seconds(), len(took), took, idle, cpu, elapsed.Round(time.Millisecond), cpu.Seconds()/elapsed.Seconds())
	if len(failed) > 0 {
		t.Fatalf("%d of 5 logins failed during the flood: %v", len(failed), failed)
	}
	if worst, limit := took[len(took)-1], max(2*time.Second, 4*idle); worst > limit {
		t.Fatalf("slowest login during the flood took %v, want at most 1 s (%v allowed: 2 s, or 4 times a login without the flood, %v)", worst, limit, idle)
	}
	if float64(sent)/elapsed.Seconds() < 1000 {
		t.Logf("the flood reached only %.0f HELLOs/s on this machine", float64(sent)/elapsed.Seconds())
	}
	p.alive(t)
}

// curveHello is a CURVE HELLO from a fresh short-term key to server.
func curveHello(t *testing.T, server security.Key) []byte {
	t.Helper()
	pub, sec, err := box.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var nonce [24]byte
	copy(nonce[:], "CurveZMQHELLO---")
	binary.BigEndian.PutUint64(nonce[16:], 1)
	h := append([]byte("\x05HELLO\x01\x00"), make([]byte, 72)...)
	h = append(h, pub[:]...)
	h = binary.BigEndian.AppendUint64(h, 1)
	return box.Seal(h, make([]byte, 64), &nonce, (*[32]byte)(&server), sec)
}

// curveHandshakeTimes runs n CURVE handshakes one after the other and
// returns their times, sorted.
func curveHandshakeTimes(t *testing.T, endpoint string, m security.Mechanism, n int) []time.Duration {
	t.Helper()
	var took []time.Duration
	for range n {
		s, d, err := dialHandshakeFrom(legitSource, endpoint, m, "DEALER", "")
		if err != nil {
			t.Fatalf("CURVE handshake: %v", err)
		}
		s.Conn.Close()
		took = append(took, d)
	}
	slices.Sort(took)
	return took
}

// A captured CURVE HELLO replayed 2,200/s: a legitimate handshake stays
// under 2x its idle time (asserted at 3x, and 5 ms, for a loaded
// machine), the replays cost the proxy little CPU, and they are counted
// and logged once. Before: p50 1.75 -> 15.5 ms, 8.5 s CPU in 12 s, counted
// only as handshakes_failed, nothing logged.
func TestCurveHandshakeDuringHelloReplay(t *testing.T) {
	k := newCurveKeys(t, true)
	p := startProxy(t, proxyOpts{args: k.proxyArgs(), plain: true})
	fe := strings.TrimPrefix(p.frontend, "tcp://")
	cli := security.CurveClient(k.server.Public, k.client)
	curveHandshakeTimes(t, p.frontend, cli, 5) // warm up
	idle := curveHandshakeTimes(t, p.frontend, cli, 30)

	// The captured HELLO: sent once as a client would, answered.
	capture := append(zmtpGreeting("CURVE"), cmdFrame(curveHello(t, k.server.Public))...)
	c, err := net.Dial("tcp", fe)
	if err != nil {
		t.Fatal(err)
	}
	c.Write(capture)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	welcome := make([]byte, 64+2+168)
	if _, err := io.ReadFull(c, welcome); err != nil || !bytes.Contains(welcome, []byte("\x07WELCOME")) {
		t.Fatalf("the captured HELLO got no WELCOME: %v %q", err, welcome)
	}
	c.Close()

	cpu0 := procCPU(t, p.pid())
	start := time.Now()
	f := startFlood(t, 2200, 32, func() {
		c, err := net.Dial("tcp", fe)
		if err != nil {
			return
		}
		c.Write(capture)
		// Wait for the proxy's answer, as a replayer would: a close, or
		// more than its greeting (a WELCOME).
		c.SetReadDeadline(time.Now().Add(time.Second))
		var buf [64 + 2 + 168]byte
		io.ReadAtLeast(c, buf[:], 65)
		c.Close()
	})
	f.waitCount(t, 2200) // about a second of it
	during := curveHandshakeTimes(t, p.frontend, cli, 30)
	// Keep the flood going for a CPU figure over several seconds.
	f.waitCount(t, 6*2200)
	sent := f.stop()
	elapsed := time.Since(start)
	cpu := procCPU(t, p.pid()) - cpu0
	p50Idle, p50During := idle[len(idle)/2], during[len(during)/2]
	t.Logf("CURVE HELLO replay: %d replays in %v (%.0f/s); handshake p50 idle %v, during %v (%.1fx); proxy CPU %v in %v (%.2f cores)",
		sent, elapsed.Round(time.Millisecond), float64(sent)/elapsed.Seconds(), p50Idle, p50During,
		float64(p50During)/float64(p50Idle), cpu, elapsed.Round(time.Millisecond), cpu.Seconds()/elapsed.Seconds())
	if limit := max(3*p50Idle, p50Idle+5*time.Millisecond); p50During > limit {
		t.Errorf("handshake p50 during the replay flood %v, idle %v: want under 2x (asserted at %v)", p50During, p50Idle, limit)
	}
	if cores := cpu.Seconds() / elapsed.Seconds(); cores > 0.5 {
		t.Errorf("the replay flood took %.2f cores of proxy CPU, want well under 0.5 (before: 0.7)", cores)
	}
	if skipMetrics(t, p) {
		return
	}
	replayed := p.waitMetric(t, func(v float64) bool { return v >= float64(sent)*0.9 }, fmt.Sprintf(">= 90%% of %d", sent),
		authFlood, "socket", "frontend", "reason", "replayed")
	logged := strings.Count(p.log.String(), `msg="handshake flood: handshakes turned away unchecked"`)
	t.Logf("counted %v replays; logged %d times", replayed, logged)
	if logged != 1 {
		t.Errorf("the flood was logged %d times, want once (a line a minute)", logged)
	}
}

// zeroKey is the all-zero CURVE key; zeroShared the box key it gives with
// any secret (X25519 of a low-order point is all zeros).
var zeroKey security.Key

func zeroShared() *[32]byte {
	var k [32]byte
	var zeros [16]byte
	salsa.HSalsa20(&k, &zeros, &k, &salsa.Sigma)
	return &k
}

// A CURVE client whose short-term and long-term keys are all zeros knows
// every box key without any secret. The proxy refuses its HELLO (no
// WELCOME), even with the zero key in the allow-list. Before: it passed
// HELLO, INITIATE and the vouch, and only the allow-list stopped it.
func TestCurveZeroKeysRefused(t *testing.T) {
	k := newCurveKeys(t, true)
	k.allow(t, "zero.key", security.KeyPair{Public: zeroKey})
	p := startProxy(t, proxyOpts{args: k.proxyArgs()})
	var nonce [24]byte
	copy(nonce[:], "CurveZMQHELLO---")
	binary.BigEndian.PutUint64(nonce[16:], 1)
	hello := append([]byte("\x05HELLO\x01\x00"), make([]byte, 72)...)
	hello = append(hello, zeroKey[:]...)
	hello = binary.BigEndian.AppendUint64(hello, 1)
	hello = box.SealAfterPrecomputation(hello, make([]byte, 64), &nonce, zeroShared())
	for _, ep := range []string{p.frontend, p.backend, p.publisher} {
		c, err := net.Dial("tcp", strings.TrimPrefix(ep, "tcp://"))
		if err != nil {
			t.Fatal(err)
		}
		c.Write(append(zmtpGreeting("CURVE"), cmdFrame(hello)...))
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(c)
		c.Close()
		if bytes.Contains(got, []byte("\x07WELCOME")) {
			t.Fatalf("%s: a HELLO from the all-zero key got WELCOME", ep)
		}
		if err != nil {
			t.Fatalf("%s: %v, want the proxy to close the connection", ep, err)
		}
	}
	if !skipMetrics(t, p) {
		for _, s := range []string{"frontend", "backend", "publisher"} {
			p.waitAtLeast(t, 1, "zmqproxy_handshakes_failed_total", "socket", s)
		}
	}
}

// A client whose key is removed from the allow-list is disconnected on
// SIGHUP, and the log says how many were closed; another client stays.
// Before: the log said allowed_keys=0 and the client stayed connected.
func TestCurveRevokedKeyClosedOnSIGHUP(t *testing.T) {
	k := newCurveKeys(t, true)
	other := keyPair(t)
	k.allow(t, "other.key", other)
	p := startProxy(t, proxyOpts{args: k.proxyArgs()})
	revoked, _, err := dialHandshake(p.frontend, security.CurveClient(k.server.Public, k.client), "DEALER", "revoked")
	if err != nil {
		t.Fatal(err)
	}
	defer revoked.Conn.Close()
	kept, _, err := dialHandshake(p.frontend, security.CurveClient(k.server.Public, other), "DEALER", "kept")
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Conn.Close()
	if !skipMetrics(t, p) {
		p.waitMetric(t, func(v float64) bool { return v == 2 }, "2", peers, "socket", "frontend")
	}
	if err := os.Remove(filepath.Join(k.allowDir, "client.key")); err != nil {
		t.Fatal(err)
	}
	sighup := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	kv := p.waitLog(t, metricWait, "CURVE allow-list reloaded")
	if kv["allowed_keys"] != "1" || kv["closed_connections"] != "1" {
		t.Errorf("reload logged allowed_keys=%q closed_connections=%q, want 1 and 1", kv["allowed_keys"], kv["closed_connections"])
	}
	revoked.Conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = revoked.Conn.Read(make([]byte, 1))
	t.Logf("revoked client's connection ended %v after SIGHUP: %v", time.Since(sighup).Round(time.Millisecond), err)
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the revoked client's connection is still open after SIGHUP: %v", err)
	}
	if !skipMetrics(t, p) {
		p.waitMetric(t, func(v float64) bool { return v == 1 }, "1", peers, "socket", "frontend")
	}
	kept.Conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if _, err := kept.Conn.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("the client still allowed lost its connection: %v", err)
	}
}

// Strangers are refused on all three sockets, for CURVE (a key not in the
// allow-list) and PLAIN (a wrong password, and 72 good bytes followed by
// more: bcrypt reads only 72). Before: the 72+5-byte password got in.
func TestStrangersRefusedOnEverySocket(t *testing.T) {
	k := newCurveKeys(t, true)
	long := strings.Repeat("a", 72)
	users := plainUsersFile(t, long, bcrypt.MinCost, "nova")
	curve := startProxy(t, proxyOpts{args: k.proxyArgs()})
	plain := startProxy(t, proxyOpts{args: []string{"--plain-users", users}})
	wrong, _ := security.PlainClient("nova", "guess")
	over, _ := security.PlainClient("nova", long+"WRONG")
	right, _ := security.PlainClient("nova", long)
	sockets := []struct{ name, typ string }{{"frontend", "DEALER"}, {"backend", "DEALER"}, {"publisher", "SUB"}}
	endpoint := func(p *proxy, name string) string {
		return map[string]string{"frontend": p.frontend, "backend": p.backend, "publisher": p.publisher}[name]
	}
	for _, s := range sockets {
		for _, tc := range []struct {
			name string
			p    *proxy
			m    security.Mechanism
		}{
			{"CURVE stranger", curve, security.CurveClient(k.server.Public, keyPair(t))},
			{"PLAIN wrong password", plain, wrong},
			{"PLAIN 72 right bytes and more", plain, over},
		} {
			sess, _, err := dialHandshake(endpoint(tc.p, s.name), tc.m, s.typ, "")
			if err == nil {
				sess.Conn.Close()
				t.Errorf("%s on the %s: admitted", tc.name, s.name)
				continue
			}
			if !errors.Is(err, security.ErrRefused) {
				t.Errorf("%s on the %s: %v, want a refusal by ERROR", tc.name, s.name, err)
			}
		}
		sess, _, err := dialHandshake(endpoint(plain, s.name), right, s.typ, "")
		if err != nil {
			t.Fatalf("PLAIN right password on the %s: %v", s.name, err)
		}
		sess.Conn.Close()
	}
	for _, p := range []*proxy{curve, plain} {
		if skipMetrics(t, p) {
			break
		}
		for _, s := range sockets {
			want := 1.0
			if p == plain {
				want = 2
			}
			p.waitMetric(t, func(v float64) bool { return v == want }, fmt.Sprint(want), authRefused, "socket", s.name)
		}
	}
}

// The admin endpoint: a non-loopback --admin-addr without a token is a
// configuration error; with a token every request needs it; a "simple"
// cross-site POST (text/plain) is refused and does not pause the proxy.
// Before: --admin-addr 0.0.0.0:P started, and POST /pause text/plain
// paused it.
func TestAdminEndpointRefusesStrangers(t *testing.T) {
	out, err := exec.Command(binPath, "-u", "zmq://127.0.0.1:6379/", "-H", "127.0.0.1", "--admin-addr", "0.0.0.0:0", "--check-config").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), "not a loopback address, and no admin_token_file") {
		t.Errorf("--admin-addr 0.0.0.0:0 without a token: %v, want exit status 2 naming it\n%s", err, out)
	}

	token := "7f3a9c2e5b8d1f4a6c0e9b2d"
	tokenFile := filepath.Join(t.TempDir(), "token")
	writeFileAt(t, tokenFile, token+"\n")
	p := startProxy(t, proxyOpts{args: []string{"--admin-addr", "127.0.0.1:0", "--admin-token-file", tokenFile}})
	admin := p.waitLog(t, startTimeout, "admin endpoint", "token", "true")["addr"]
	post := func(contentType, auth string) int {
		req, _ := http.NewRequest(http.MethodPost, "http://"+admin+"/pause", strings.NewReader("x"))
		if contentType != "" {
			req.Header.Set("Content-Type", contentType)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := httpClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct {
		name, contentType, auth string
		want                    int
	}{
		{"no token", "application/json", "", 401},
		{"wrong token", "application/json", "Bearer " + strings.Repeat("0", len(token)), 401},
		{"simple POST text/plain", "text/plain", "Bearer " + token, 415},
	} {
		if got := post(tc.contentType, tc.auth); got != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, got, tc.want)
		}
	}
	// Nothing of that paused it; ctl with the token does.
	ctl := func(args ...string) string {
		out, err := exec.Command(binPath, append([]string{"ctl"}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("ctl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if out := ctl("stats", "--admin", admin, "--admin-token-file", tokenFile); !strings.Contains(out, `"paused": false`) {
		t.Fatalf("after refused requests, stats say: %s", out)
	}
	if out := ctl("pause", "--admin", admin, "--admin-token-file", tokenFile); strings.TrimSpace(out) != "paused" {
		t.Fatalf("ctl pause with the token: %q", out)
	}
	if out, err := exec.Command(binPath, "ctl", "resume", "--admin", admin).CombinedOutput(); err == nil || !strings.Contains(string(out), "401") {
		t.Errorf("ctl resume without the token: %v %s, want 401", err, out)
	}

	// Without a token, on loopback: the cross-site POST is refused too.
	q := startProxy(t, proxyOpts{args: []string{"--admin-addr", "127.0.0.1:0"}})
	admin = q.waitLog(t, startTimeout, "admin endpoint", "token", "false")["addr"]
	if got := post("text/plain", ""); got != 415 {
		t.Errorf("simple POST text/plain without a token: status %d, want 415", got)
	}
	if out := ctl("stats", "--admin", admin); !strings.Contains(out, `"paused": false`) {
		t.Fatalf("a text/plain POST paused the proxy: %s", out)
	}
}

// pprof is not on the metrics address; --pprof-addr serves it on its own.
// Before: /debug/pprof/ on the metrics address, open to whoever scrapes.
func TestPprofOnlyOnItsOwnAddress(t *testing.T) {
	get := func(url string) int {
		resp, err := httpClient.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	p := startProxy(t, proxyOpts{})
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/profile?seconds=1", "/debug/pprof/trace?seconds=1"} {
		if got := get("http://" + p.metrics + path); got != http.StatusNotFound {
			t.Errorf("GET %s on the metrics address: %d, want 404", path, got)
		}
	}
	q := startProxy(t, proxyOpts{args: []string{"--pprof-addr", "127.0.0.1:0"}})
	addr := q.waitLog(t, startTimeout, "pprof endpoint")["addr"]
	if got := get("http://" + addr + "/debug/pprof/"); got != http.StatusOK {
		t.Errorf("GET /debug/pprof/ on --pprof-addr: %d, want 200", got)
	}
	if got := get("http://" + q.metrics + "/debug/pprof/"); got != http.StatusNotFound {
		t.Errorf("GET /debug/pprof/ on the metrics address with --pprof-addr: %d, want 404", got)
	}
}

// Secrets: a bad character in a secret key file is reported without any
// part of the key; a key file readable by others is loaded with a
// warning; keygen -o does not overwrite, nor follow a link, without
// --force. Before: the error printed 39 of 40 characters; 0644 loaded
// silently; keygen -o overwrote, kept 0644 and followed links.
func TestSecretFiles(t *testing.T) {
	dir := t.TempDir()
	kp := keyPair(t)
	secret := kp.Secret.String()
	bad := secret[:20] + "~" + secret[21:]
	badFile := filepath.Join(dir, "bad.key_secret")
	writeFileAt(t, badFile, "curve\n    secret-key = \""+bad+"\"\n")
	allow := filepath.Join(dir, "allow")
	os.Mkdir(allow, 0o700)
	out, err := exec.Command(binPath, "-u", "zmq://127.0.0.1:6379/", "-H", "127.0.0.1",
		"--curve-secret-key", badFile, "--curve-allow", allow, "--check-config").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 {
		t.Fatalf("a bad secret key file: %v, want exit status 2\n%s", err, out)
	}
	for i := 0; i+6 <= len(bad); i++ {
		if bytes.Contains(out, []byte(bad[i:i+6])) {
			t.Fatalf("the error holds %q, 6 characters of the secret key:\n%s", bad[i:i+6], out)
		}
	}

	loose := filepath.Join(dir, "loose.key_secret")
	writeFileAt(t, loose, security.CertText(kp, true))
	if err := os.Chmod(loose, 0o644); err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, proxyOpts{args: []string{"--curve-secret-key", loose, "--curve-allow", allow}})
	kv := p.waitLog(t, startTimeout, "secret file readable by group or others: chmod 600 it")
	if kv["file"] != loose || kv["mode"] != "0644" || kv["option"] != "curve_secret_key" {
		t.Errorf("warning names %v, want file %s mode 0644 option curve_secret_key", kv, loose)
	}

	name := filepath.Join(dir, "node")
	target := filepath.Join(dir, "target")
	writeFileAt(t, target, "precious\n")
	os.Chmod(target, 0o644)
	if err := os.Symlink(target, name+".key_secret"); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(binPath, "keygen", "-o", name).CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(string(out), "exists: give --force") {
		t.Errorf("keygen -o onto a link: %v, want exit status 1 and \"exists: give --force\"\n%s", err, out)
	}
	if b, _ := os.ReadFile(target); string(b) != "precious\n" {
		t.Fatalf("keygen -o wrote through the link: %q", b)
	}
	if out, err := exec.Command(binPath, "keygen", "--force", "-o", name).CombinedOutput(); err != nil {
		t.Fatalf("keygen --force -o: %v\n%s", err, out)
	}
	st, err := os.Lstat(name + ".key_secret")
	if err != nil || !st.Mode().IsRegular() || st.Mode().Perm() != 0o600 {
		t.Fatalf("after keygen --force: %v %v, want a regular file of mode 0600", st.Mode(), err)
	}
	if b, _ := os.ReadFile(target); string(b) != "precious\n" {
		t.Fatalf("keygen --force wrote through the link: %q", b)
	}
}
