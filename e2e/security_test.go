package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
	"github.com/zmq-proxy/zmq-proxy/transport/security"
)

// Metric names of the security counters.
const (
	authRefused   = "zmqproxy_auth_refused_total"
	decryptFailed = "zmqproxy_decrypt_failed_total"
)

// curveKeys are a CURVE proxy's keys on disk: its secret key file, and an
// allow-list directory holding the public key of client.
type curveKeys struct {
	server, client security.KeyPair
	secretFile     string
	allowDir       string
}

func newCurveKeys(t *testing.T, allowClient bool) *curveKeys {
	t.Helper()
	k := &curveKeys{server: keyPair(t), client: keyPair(t)}
	dir := t.TempDir()
	k.secretFile = filepath.Join(dir, "proxy.key_secret")
	k.allowDir = filepath.Join(dir, "allow")
	writeFileAt(t, k.secretFile, security.CertText(k.server, true))
	if err := os.Mkdir(k.allowDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if allowClient {
		k.allow(t, "client.key", k.client)
	}
	return k
}

func (k *curveKeys) allow(t *testing.T, name string, kp security.KeyPair) {
	t.Helper()
	writeFileAt(t, filepath.Join(k.allowDir, name), security.CertText(kp, false))
}

func (k *curveKeys) proxyArgs() []string {
	return []string{"--curve-secret-key", k.secretFile, "--curve-allow", k.allowDir}
}

// env makes zpeer's sockets CURVE clients with keys kp towards serverKey.
func curveEnv(serverKey security.Key, kp security.KeyPair) []string {
	return []string{"ZP_CURVE_SERVER_KEY=" + serverKey.String(),
		"ZP_CURVE_PUBLIC_KEY=" + kp.Public.String(), "ZP_CURVE_SECRET_KEY=" + kp.Secret.String()}
}

func keyPair(t *testing.T) security.KeyPair {
	t.Helper()
	kp, err := security.GenerateKeyPair()
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// plainUsersFile writes a --plain-users file in a new temporary directory
// in which each of names has password (hashed at cost), and returns its
// path.
func plainUsersFile(t *testing.T, password string, cost int, names ...string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	for _, n := range names {
		text.WriteString(n + ":" + string(h) + "\n")
	}
	path := filepath.Join(t.TempDir(), "users")
	writeFileAt(t, path, text.String())
	return path
}

// writeFileAt writes text to the file at path.
func writeFileAt(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// libzmq CURVE peers through a CURVE proxy: call, reply, ACK, cast and
// fanout, every frame checked byte for byte after decryption (the same
// script as without CURVE, its sockets made CURVE clients).
func TestCurveCallCastFanout(t *testing.T) {
	k := newCurveKeys(t, true)
	p := startProxy(t, proxyOpts{args: k.proxyArgs()})
	if kv := p.waitLog(t, metricWait, "proxy started"); kv["security"] != "CURVE" {
		t.Errorf("proxy started with security=%q, want CURVE", kv["security"])
	}
	peer := startPeerEnv(t, curveEnv(k.server.Public, k.client), "call_reply.py", p.peerArgs()...)
	res := peer.result(t)
	if res["calls"] != float64(1) || res["fanouts"] != float64(1) {
		t.Errorf("call_reply: %v, want 1 call and 1 fanout", res)
	}
	p.waitAtLeast(t, 3, received, "socket", "frontend")
	p.waitAtLeast(t, 1, published, "socket", "publisher")
	for _, m := range []string{authRefused, decryptFailed} {
		if v := p.metric(t, m); v != 0 {
			t.Errorf("%s = %v, want 0", m, v)
		}
	}
}

// Casts through a CURVE proxy, many in bursts: each arrives once.
func TestCurveCastMany(t *testing.T) {
	const count = 2000
	k := newCurveKeys(t, true)
	p := startProxy(t, proxyOpts{args: k.proxyArgs()})
	peer := startPeerEnv(t, curveEnv(k.server.Public, k.client), "cast_many.py", append(p.peerArgs(), "--count", "2000")...)
	peer.awaitStep(t, "warm", nil)
	recv0 := p.metric(t, received, "socket", "frontend")
	peer.proceed(t)
	res := peer.result(t)
	if got := res["received"]; got != float64(count) {
		t.Errorf("casts received: got %v, want %d", got, count)
	}
	p.waitAtLeast(t, recv0+count, received, "socket", "frontend")
}

// libzmq's heartbeats travel inside CURVE MESSAGE commands (PING with the
// COMMAND flag in the encrypted flags byte): the proxy answers them there,
// and idle CURVE peers stay connected.
func TestCurveHeartbeat(t *testing.T) {
	k := newCurveKeys(t, true)
	p := startProxy(t, proxyOpts{args: k.proxyArgs()})
	startPeerEnv(t, curveEnv(k.server.Public, k.client), "heartbeat.py", p.peerArgs()...).result(t)
	p.alive(t)
	if v := p.metric(t, decryptFailed); v != 0 {
		t.Errorf("%s = %v, want 0", decryptFailed, v)
	}
}

// The three ways a libzmq client is turned away by a CURVE proxy: a key
// not in the allow-list, the wrong server key, one flipped byte in an
// encrypted frame. Each is counted and nothing it sent is taken in.
func TestCurveRefusals(t *testing.T) {
	tests := []struct {
		name   string
		env    func(k *curveKeys) []string
		flip   bool
		metric string
	}{
		{"client key not allowed", func(k *curveKeys) []string { return curveEnv(k.server.Public, keyPair(t)) }, false, authRefused},
		{"wrong server key", func(k *curveKeys) []string { return curveEnv(keyPair(t).Public, k.client) }, false, authRefused},
		{"flipped byte in a MESSAGE", func(k *curveKeys) []string { return curveEnv(k.server.Public, k.client) }, true, decryptFailed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k := newCurveKeys(t, true)
			p := startProxy(t, proxyOpts{args: k.proxyArgs()})
			args := p.peerArgs()
			if tc.flip {
				args[1] = "tcp://" + testutil.Relay(t, strings.TrimPrefix(p.frontend, "tcp://"), testutil.FlipFrame(2))
			}
			peer := startPeerEnv(t, tc.env(k), "sec_attempt.py", args...)
			peer.awaitStep(t, "sent", nil)
			p.waitAtLeast(t, 1, tc.metric, "socket", "frontend")
			if tc.metric == authRefused {
				p.waitLog(t, metricWait, "credentials refused")
			} else {
				p.waitLog(t, metricWait, "peer closed: a message failed to decrypt")
			}
			for _, m := range [][2]string{{received, "frontend"}, {routed, "backend"}} {
				if v := p.metric(t, m[0], "socket", m[1]); v != 0 {
					t.Errorf("%s{socket=%s} = %v, want 0: the refused client got in", m[0], m[1], v)
				}
			}
			// The proxy logs the close before it counts the peer gone;
			// the client does not reconnect (sec_attempt.py).
			p.waitExactly(t, 0, peers, "socket", "frontend")
			peer.proceed(t)
			peer.result(t)
		})
	}
}

// An empty allow-list refuses everyone and says so at start; a key added
// to it is taken on SIGHUP, and a client with that key gets in.
func TestCurveEmptyAllowListThenSIGHUP(t *testing.T) {
	k := newCurveKeys(t, false)
	p := startProxy(t, proxyOpts{args: k.proxyArgs()})
	p.waitLog(t, metricWait, "the CURVE allow-list is empty: every client is refused until keys are added and the proxy gets SIGHUP")
	peer := startPeerEnv(t, curveEnv(k.server.Public, k.client), "sec_attempt.py", p.peerArgs()...)
	peer.awaitStep(t, "sent", nil)
	p.waitAtLeast(t, 1, authRefused, "socket", "frontend")
	if v := p.metric(t, received, "socket", "frontend"); v != 0 {
		t.Fatalf("received %v messages through an empty allow-list, want 0", v)
	}
	k.allow(t, "client.key", k.client)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if kv := p.waitLog(t, metricWait, "CURVE allow-list reloaded"); kv["allowed_keys"] != "1" {
		t.Errorf("reloaded with allowed_keys=%q, want 1", kv["allowed_keys"])
	}
	peer.proceed(t)
	peer.result(t)
	// libzmq gives up on a server that sent ERROR; a new client with the
	// same key, now allowed, gets through.
	res := startPeerEnv(t, curveEnv(k.server.Public, k.client), "call_reply.py", p.peerArgs()...).result(t)
	if res["calls"] != float64(1) {
		t.Errorf("call_reply after the reload: %v, want 1 call", res)
	}
}

// PLAIN: the right password is routed (call, cast, fanout byte for
// byte), a wrong one is refused, counted, and nothing of it is taken.
func TestPlainRightAndWrongPassword(t *testing.T) {
	users := plainUsersFile(t, "s3cret", bcrypt.MinCost, "nova")
	p := startProxy(t, proxyOpts{args: []string{"--plain-users", users}})

	bad := startPeerEnv(t, []string{"ZP_PLAIN_USER=nova", "ZP_PLAIN_PASSWORD=guess"}, "sec_attempt.py", p.peerArgs()...)
	bad.awaitStep(t, "sent", nil)
	p.waitAtLeast(t, 1, authRefused, "socket", "frontend")
	if v := p.metric(t, received, "socket", "frontend"); v != 0 {
		t.Fatalf("received %v messages from a wrong password, want 0", v)
	}
	bad.proceed(t)
	bad.result(t)

	good := startPeerEnv(t, []string{"ZP_PLAIN_USER=nova", "ZP_PLAIN_PASSWORD=s3cret"}, "call_reply.py", p.peerArgs()...)
	if res := good.result(t); res["calls"] != float64(1) || res["fanouts"] != float64(1) {
		t.Errorf("call_reply with the right password: %v, want 1 call and 1 fanout", res)
	}
}

// The local publisher proxy subscribes to a CURVE central proxy as a
// CURVE client and requires CURVE on its own PUB: a fanout from a libzmq
// CURVE client reaches a libzmq CURVE SUB on the node, byte for byte.
func TestLocalProxyCurveClient(t *testing.T) {
	k := newCurveKeys(t, true)
	central := startProxy(t, proxyOpts{args: k.proxyArgs()})
	local := keyPair(t)
	k.allow(t, "node-1.key", local)
	if err := central.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	central.waitLog(t, metricWait, "CURVE allow-list reloaded")
	dir := t.TempDir()
	localKey := filepath.Join(dir, "node-1.key_secret")
	writeFileAt(t, localKey, security.CertText(local, true))
	ini := filepath.Join(dir, "local.ini")
	writeFileAt(t, ini, "[oslo_messaging_zmq]\nsubscribe_on = "+strings.TrimPrefix(central.publisher, "tcp://")+"\n")
	// The local proxy's own PUB requires CURVE too, with its key pair, and
	// allows the client's key.
	localAllow := filepath.Join(dir, "allow")
	if err := os.Mkdir(localAllow, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFileAt(t, filepath.Join(localAllow, "client.key"), security.CertText(k.client, false))
	lp := startProxy(t, proxyOpts{local: true, args: []string{"-c", ini,
		"--curve-server-key", k.server.Public.String(), "--curve-client-key", localKey,
		"--curve-secret-key", localKey, "--curve-allow", localAllow}})
	lp.waitExactly(t, 1, peers, "socket", "subscriber")
	central.waitExactly(t, 1, peers, "socket", "publisher")
	// The client sends on the central frontend with CURVE; its SUB reads
	// the local PUB with CURVE. The key goes with "=": a Z85 key may start
	// with "-", which argparse takes for an option.
	res := startPeerEnv(t, curveEnv(k.server.Public, k.client), "sec_fanout_local.py",
		"--fe", central.frontend, "--pub", lp.publisher, "--sub-server-key="+local.Public.String(), "--timeout", "60").result(t)
	if res["fanouts"] != float64(1) {
		t.Errorf("fanout through the local proxy: %v, want 1", res)
	}
	if v := central.metric(t, authRefused); v != 0 {
		t.Errorf("central %s = %v, want 0", authRefused, v)
	}
}

// The local publisher proxy subscribes to a PLAIN central proxy as a
// PLAIN client, and its own PUB requires PLAIN too: a fanout from a libzmq
// PLAIN client reaches a libzmq PLAIN SUB on the node.
func TestLocalProxyPlainClient(t *testing.T) {
	users := plainUsersFile(t, "pw", bcrypt.MinCost, "nova", "node-1")
	dir := filepath.Dir(users)
	central := startProxy(t, proxyOpts{args: []string{"--plain-users", users}})
	ini := filepath.Join(dir, "local.ini")
	writeFileAt(t, ini, "[oslo_messaging_zmq]\nsubscribe_on = "+strings.TrimPrefix(central.publisher, "tcp://")+"\n")
	lp := startProxy(t, proxyOpts{local: true, args: []string{"-c", ini,
		"--plain-user", "node-1", "--plain-password", "pw", "--plain-users", users}})
	lp.waitExactly(t, 1, peers, "socket", "subscriber")
	res := startPeerEnv(t, []string{"ZP_PLAIN_USER=nova", "ZP_PLAIN_PASSWORD=pw"}, "sec_fanout_local.py",
		"--fe", central.frontend, "--pub", lp.publisher, "--timeout", "60").result(t)
	if res["fanouts"] != float64(1) {
		t.Errorf("fanout through the local proxy: %v, want 1", res)
	}
	if v := central.metric(t, authRefused) + lp.metric(t, authRefused); v != 0 {
		t.Errorf("%s = %v, want 0", authRefused, v)
	}
}
