package security

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/nacl/box"
	"golang.org/x/crypto/salsa20/salsa"
	"golang.org/x/time/rate"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
)

// forge describes a CURVE client that cheats in one way. The zero value
// is an honest client.
type forge struct {
	shortPub      *Key     // C' sent in HELLO (a low-order point); its boxes use the all-zero shared key
	longPub       *Key     // C claimed in INITIATE; if low order, the vouch uses the all-zero shared key
	padding       byte     // written over HELLO's 72 padding bytes
	signature     byte     // written over the first of HELLO's 64 signature bytes
	initNonce     uint64   // INITIATE's short nonce; 0: 2
	vouchSigner   *KeyPair // who seals the vouch; nil: the claimed key's owner
	vouchShort    *Key     // C' named in the vouch; nil: ours
	vouchServer   *Key     // S named in the vouch; nil: the server's
	forgetWelcome bool     // stop after HELLO (a replay flood)
	helloName     string   // HELLO's name; "": HELLO
	helloExtra    int      // bytes appended to HELLO
	initName      string   // INITIATE's name; "": INITIATE
	initTruncate  int      // INITIATE cut to this many bytes; 0: whole
	initTamper    bool     // a byte of INITIATE's box flipped
}

// lowOrder are points of small order on Curve25519 (from libsodium's
// blocklist): with any secret, X25519 gives all zeros.
var lowOrder = map[string]string{
	"zero":          "0000000000000000000000000000000000000000000000000000000000000000",
	"one":           "0100000000000000000000000000000000000000000000000000000000000000",
	"order 8":       "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
	"order 8 (2)":   "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
	"p-1 (order 2)": "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
}

func lowOrderKey(t *testing.T, name string) *Key {
	t.Helper()
	b, err := hex.DecodeString(lowOrder[name])
	if err != nil {
		t.Fatal(err)
	}
	var k Key
	copy(k[:], b)
	return &k
}

// zeroShared is the box key X25519 gives with a low-order point: what an
// attacker who sends one can compute without any secret.
func zeroShared() *[32]byte {
	var k [32]byte
	var zeros [16]byte
	salsa.HSalsa20(&k, &zeros, &k, &salsa.Sigma)
	return &k
}

func isLowOrder(k *Key) bool {
	for _, v := range lowOrder {
		if hex.EncodeToString(k[:]) == v {
			return true
		}
	}
	return false
}

// forgeHandshake runs f's client against server (whose public key is
// srvPub) over TCP, as kp, and returns the server's error and what the
// client got last (an ERROR's reason, or "").
func forgeHandshake(t *testing.T, server Mechanism, srvPub Key, kp KeyPair, f forge) (srvErr error, clientErr error) {
	t.Helper()
	srvConn, conn := tcpPair(t)
	done := make(chan error, 1)
	go func() {
		defer srvConn.Close()
		srvConn.SetDeadline(time.Now().Add(wait))
		_, err := Handshake(srvConn, server, "ROUTER", []byte("srv"), 1<<20)
		done <- err
	}()
	conn.SetDeadline(time.Now().Add(wait))
	clientErr = f.run(&cmdConn{conn: conn}, srvPub, kp)
	if f.forgetWelcome {
		conn.Close()
	}
	return <-done, clientErr
}

func (f forge) run(c *cmdConn, srvPub Key, kp KeyPair) error {
	if err := c.exchangeGreetings("CURVE", false); err != nil {
		return err
	}
	shortPub, shortSec, err := box.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	helloKey := new([32]byte)
	if f.shortPub != nil {
		*shortPub = *f.shortPub
		helloKey = zeroShared()
	} else {
		box.Precompute(helloKey, (*[32]byte)(&srvPub), shortSec)
	}
	sig := make([]byte, 64)
	sig[0] = f.signature
	name := "HELLO"
	if f.helloName != "" {
		name = f.helloName
	}
	hello := append([]byte{5}, name...)
	hello = append(hello, 1, 0)
	hello = append(hello, bytes.Repeat([]byte{f.padding}, 72)...)
	hello = append(hello, shortPub[:]...)
	hello = binary.BigEndian.AppendUint64(hello, 1)
	hello = box.SealAfterPrecomputation(hello, sig, shortNonce(nonceHello, 1), helloKey)
	hello = append(hello, make([]byte, f.helloExtra)...)
	if err := c.writeCommand(hello); err != nil {
		return err
	}
	if f.forgetWelcome {
		return nil
	}
	var serverShort [32]byte
	var cookie [cookieSize]byte
	if err := expect(c, "WELCOME", func(data []byte) error {
		plain, ok := box.OpenAfterPrecomputation(nil, data[16:], longNonce(nonceWelcome, data[:16]), helloKey)
		if !ok {
			return errors.New("forge: WELCOME does not open")
		}
		copy(serverShort[:], plain[:32])
		copy(cookie[:], plain[32:128])
		return nil
	}); err != nil {
		return err
	}
	initKey := new([32]byte)
	if f.shortPub != nil {
		initKey = zeroShared()
	} else {
		box.Precompute(initKey, &serverShort, shortSec)
	}
	claimed := kp.Public
	if f.longPub != nil {
		claimed = *f.longPub
	}
	vouchKey := new([32]byte)
	switch {
	case f.longPub != nil && isLowOrder(f.longPub):
		vouchKey = zeroShared()
	case f.vouchSigner != nil:
		box.Precompute(vouchKey, &serverShort, (*[32]byte)(&f.vouchSigner.Secret))
	default:
		box.Precompute(vouchKey, &serverShort, (*[32]byte)(&kp.Secret))
	}
	var vouchPlain [64]byte
	copy(vouchPlain[:32], shortPub[:])
	if f.vouchShort != nil {
		copy(vouchPlain[:32], f.vouchShort[:])
	}
	copy(vouchPlain[32:], srvPub[:])
	if f.vouchServer != nil {
		copy(vouchPlain[32:], f.vouchServer[:])
	}
	var vouchNonce [16]byte
	rand.Read(vouchNonce[:])
	initPlain := append([]byte{}, claimed[:]...)
	initPlain = append(initPlain, vouchNonce[:]...)
	initPlain = box.SealAfterPrecomputation(initPlain, vouchPlain[:], longNonce(nonceVouch, vouchNonce[:]), vouchKey)
	initPlain = appendMetadata(initPlain, "DEALER", []byte("cli"))
	n := f.initNonce
	if n == 0 {
		n = 2
	}
	iname := "INITIATE"
	if f.initName != "" {
		iname = f.initName
	}
	initiate := append([]byte{8}, iname...)
	initiate = append(initiate, cookie[:]...)
	initiate = binary.BigEndian.AppendUint64(initiate, n)
	initiate = box.SealAfterPrecomputation(initiate, initPlain, shortNonce(nonceInitiate, n), initKey)
	if f.initTamper {
		initiate[150] ^= 1
	}
	if f.initTruncate > 0 {
		initiate = initiate[:f.initTruncate]
	}
	if err := c.writeCommand(initiate); err != nil {
		return err
	}
	return expect(c, "READY", func([]byte) error { return nil })
}

// Each check of the CURVE server against a client that cheats: the honest
// client gets through (so that the forger works), every cheat is refused
// with the check's own error, never by the allow-list (every key the
// cheats claim is allowed).
func TestCurveForgeries(t *testing.T) {
	srvKP, cliKP, other := mustKeyPair(t), mustKeyPair(t), mustKeyPair(t)
	zero := lowOrderKey(t, "zero")
	allow := AllowKeys(cliKP.Public, other.Public, *zero, *lowOrderKey(t, "order 8"))
	stranger := mustKeyPair(t)
	tests := []struct {
		name    string
		f       forge
		kp      KeyPair
		want    error
		wantMsg string
	}{
		{"honest client", forge{}, cliKP, nil, ""},
		{"vouch sealed by another key than the one claimed", forge{vouchSigner: &other}, cliKP, ErrHandshake, "vouch does not open"},
		{"vouch naming another short-term key", forge{vouchShort: &other.Public}, cliKP, ErrHandshake, "another short-term key"},
		{"vouch naming another server key", forge{vouchServer: &stranger.Public}, cliKP, ErrHandshake, "another server key"},
		{"INITIATE nonce equal to HELLO's", forge{initNonce: 1}, cliKP, ErrHandshake, "does not follow HELLO"},
		{"HELLO signature not zeros", forge{signature: 1}, cliKP, ErrHandshake, "signature"},
		{"HELLO padding not zeros", forge{padding: 1}, cliKP, ErrHandshake, "padding"},
		{"all-zero short-term and long-term keys", forge{shortPub: zero, longPub: zero}, cliKP, ErrHandshake, "HELLO with a low-order short-term key"},
		{"short-term key of order 8", forge{shortPub: lowOrderKey(t, "order 8")}, cliKP, ErrHandshake, "HELLO with a low-order short-term key"},
		{"short-term key one", forge{shortPub: lowOrderKey(t, "one")}, cliKP, ErrHandshake, "HELLO with a low-order short-term key"},
		{"short-term key p-1", forge{shortPub: lowOrderKey(t, "p-1 (order 2)")}, cliKP, ErrHandshake, "HELLO with a low-order short-term key"},
		{"HELLO misnamed", forge{helloName: "HELLX"}, cliKP, ErrHandshake, "expected HELLO"},
		{"HELLO one byte long", forge{helloExtra: 1}, cliKP, ErrHandshake, "HELLO of 201 bytes"},
		{"INITIATE misnamed", forge{initName: "INITIATX"}, cliKP, ErrHandshake, "expected INITIATE"},
		{"INITIATE cut to 120 bytes", forge{initTruncate: 120}, cliKP, ErrHandshake, "INITIATE of 120 bytes"},
		{"INITIATE box tampered", forge{initTamper: true}, cliKP, ErrHandshake, "INITIATE does not open"},
		{"all-zero long-term key", forge{longPub: zero}, cliKP, ErrHandshake, "long-term key is of low order"},
		{"long-term key of order 8", forge{longPub: lowOrderKey(t, "order 8")}, cliKP, ErrHandshake, "long-term key is of low order"},
		{"stranger", forge{}, stranger, ErrRefused, "not allowed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			server := CurveServer(srvKP, allow)
			srvErr, cliErr := forgeHandshake(t, server, srvKP.Public, tc.kp, tc.f)
			if tc.want == nil {
				if srvErr != nil || cliErr != nil {
					t.Fatalf("honest handshake: server %v, client %v", srvErr, cliErr)
				}
				return
			}
			wantErr(t, "server", srvErr, tc.want)
			if !strings.Contains(srvErr.Error(), tc.wantMsg) {
				t.Fatalf("server error %q, want it to say %q", srvErr, tc.wantMsg)
			}
			if cliErr == nil {
				t.Fatal("the cheating client got READY")
			}
		})
	}
}

// A captured HELLO replayed is refused before any X25519, once it has been
// seen; the honest client that sent it first was served.
func TestCurveReplayedHello(t *testing.T) {
	srvKP, cliKP := mustKeyPair(t), mustKeyPair(t)
	server := CurveServer(srvKP, AllowKeys(cliKP.Public))
	fromClient, _ := transcript(t, server, CurveClient(srvKP.Public, cliKP), "ROUTER", "DEALER")
	hello := fromClient[:64+2+helloSize]
	for i := range 3 {
		err := serverGets(server, "ROUTER", hello)
		if !errors.Is(err, ErrReplayed) {
			t.Fatalf("replay %d: got %v, want %v", i, err, ErrReplayed)
		}
	}
	// The memory is bounded: the oldest key is forgotten first.
	g := newCurveGuard()
	for i := range curveReplayMemory + 1 {
		var k Key
		binary.BigEndian.PutUint32(k[:], uint32(i+1))
		g.remember(k)
	}
	var first, last Key
	binary.BigEndian.PutUint32(first[:], 1)
	binary.BigEndian.PutUint32(last[:], curveReplayMemory+1)
	if g.replayed(first) || !g.replayed(last) || len(g.seen) != curveReplayMemory {
		t.Fatalf("replay memory: first %v, last %v, size %d; want false, true, %d",
			g.replayed(first), g.replayed(last), len(g.seen), curveReplayMemory)
	}
}

// HELLOs over a source's limit get ERROR "300" without any X25519, and
// do not use up the total: another source is still served.
func TestCurveHelloRateLimit(t *testing.T) {
	srvKP, cliKP := mustKeyPair(t), mustKeyPair(t)
	s := CurveServer(srvKP, AllowKeys(cliKP.Public)).(*curveServer)
	s.guard = newCurveGuardLimits(rate.Every(time.Hour), 3, rate.Every(time.Hour), 5)
	for i := range 3 {
		if srvErr, cliErr := forgeHandshake(t, s, srvKP.Public, cliKP, forge{}); srvErr != nil || cliErr != nil {
			t.Fatalf("handshake %d within the burst: server %v, client %v", i, srvErr, cliErr)
		}
	}
	srvErr, cliErr := forgeHandshake(t, s, srvKP.Public, cliKP, forge{})
	wantErr(t, "server, over the source's limit", srvErr, ErrThrottled)
	if cliErr == nil || !strings.Contains(cliErr.Error(), `"300"`) {
		t.Fatalf("client got %v, want ERROR \"300\"", cliErr)
	}
	// Another source: the total has 2 left.
	if !s.guard.allow("192.0.2.1", time.Now()) || !s.guard.allow("192.0.2.2", time.Now()) {
		t.Fatal("another source was refused while the total had tokens")
	}
	if s.guard.allow("192.0.2.3", time.Now()) {
		t.Fatal("the total limit did not hold")
	}
}

// A removed key's live sessions are closed by CloseRevoked, the others
// stay; a closed session leaves the set.
func TestCurveRevocation(t *testing.T) {
	dir := t.TempDir()
	srvKP, keep, drop := mustKeyPair(t), mustKeyPair(t), mustKeyPair(t)
	writeKey := func(name string, kp KeyPair) {
		t.Helper()
		writeFile(t, dir+"/"+name, CertText(kp, false))
	}
	writeKey("keep.key", keep)
	writeKey("drop.key", drop)
	allow, err := NewAllowList(dir)
	if err != nil {
		t.Fatal(err)
	}
	server := CurveServer(srvKP, allow)
	_, cliKeep := handshakePair(t, server, CurveClient(srvKP.Public, keep), "ROUTER", "DEALER")
	srvDrop, cliDrop := handshakePair(t, server, CurveClient(srvKP.Public, drop), "ROUTER", "DEALER")
	if cliKeep.err != nil || cliDrop.err != nil {
		t.Fatalf("handshakes: %v, %v", cliKeep.err, cliDrop.err)
	}
	if n := allow.Sessions(); n != 2 {
		t.Fatalf("sessions %d, want 2", n)
	}
	removeFile(t, dir+"/drop.key")
	reloadAndRevoke(t, allow, 1, 1)
	// The revoked client's connection is closed under it.
	cliDrop.s.Conn.SetReadDeadline(time.Now().Add(wait))
	if _, err := cliDrop.s.Conn.Read(make([]byte, 1)); err == nil {
		t.Fatal("the revoked client read data, want its connection closed")
	}
	if _, err := srvDrop.s.Conn.Write([]byte{0, 0}); err == nil {
		t.Fatal("the server wrote to the revoked session")
	}
	if n := allow.CloseRevoked(); n != 0 {
		t.Fatalf("second CloseRevoked closed %d, want 0", n)
	}
}

// revoker is a credentials list that closes the sessions it no longer
// allows: *AllowList, *PlainUsers.
type revoker interface {
	Reload() error
	CloseRevoked() int
	Sessions() int
}

// reloadAndRevoke reloads r and checks that CloseRevoked closes closed
// sessions and leaves left.
func reloadAndRevoke(t *testing.T, r revoker, closed, left int) {
	t.Helper()
	if err := r.Reload(); err != nil {
		t.Fatal(err)
	}
	if n := r.CloseRevoked(); n != closed {
		t.Fatalf("CloseRevoked closed %d, want %d", n, closed)
	}
	if n := r.Sessions(); n != left {
		t.Fatalf("sessions after revocation %d, want %d", n, left)
	}
}

// The same for PLAIN: a removed user, and a user whose password changed.
func TestPlainRevocation(t *testing.T) {
	path := t.TempDir() + "/users"
	writeFile(t, path, "alice:"+hash(t, "a")+"\nbob:"+hash(t, "b")+"\ncarol:"+hash(t, "c")+"\n")
	users, err := LoadPlainUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	server := PlainServer(users)
	var clients []result
	for _, u := range []string{"alice", "bob", "carol"} {
		cli, _ := PlainClient(u, u[:1])
		_, c := handshakePair(t, server, cli, "ROUTER", "DEALER")
		if c.err != nil {
			t.Fatalf("%s: %v", u, c.err)
		}
		clients = append(clients, c)
	}
	// bob removed, carol's password changed, alice as she was.
	aliceLine := strings.SplitN(readFile(t, path), "\n", 2)[0]
	writeFile(t, path, aliceLine+"\ncarol:"+hash(t, "new")+"\n")
	reloadAndRevoke(t, users, 2, 1) // bob removed, carol's password changed; alice stays
	for i, c := range clients[1:] {
		c.s.Conn.SetReadDeadline(time.Now().Add(wait))
		if _, err := c.s.Conn.Read(make([]byte, 1)); err == nil {
			t.Fatalf("client %d read data, want its connection closed", i+1)
		}
	}
}

// bcrypt reads 72 bytes: a longer password is refused, with ERROR, before
// any hash, whatever its first 72 bytes.
func TestPlainPasswordOver72Bytes(t *testing.T) {
	long := strings.Repeat("a", 72)
	u, err := PlainUserList(map[string]string{"alice": hash(t, long)})
	if err != nil {
		t.Fatal(err)
	}
	if u.Check([]byte("alice"), []byte(long+"WRONG")) || !u.Check([]byte("alice"), []byte(long)) {
		t.Fatal("Check: 72 right bytes and more accepted, or the 72 alone refused")
	}
	for _, tc := range []struct {
		password string
		ok       bool
	}{{long, true}, {long + "WRONG", false}, {long + "a", false}} {
		cli, _ := PlainClient("alice", tc.password)
		srv, c := handshakePair(t, PlainServer(u), cli, "ROUTER", "DEALER")
		if tc.ok {
			if srv.err != nil || c.err != nil {
				t.Fatalf("%d bytes: server %v, client %v", len(tc.password), srv.err, c.err)
			}
			continue
		}
		wantErr(t, "server", srv.err, ErrRefused)
		wantErr(t, "client (told by ERROR)", c.err, ErrRefused)
		if !strings.Contains(srv.err.Error(), "longer than 72") {
			t.Errorf("server error %q, want it to say the password is too long", srv.err)
		}
	}
}

// A peer that hangs up while its HELLO waits for a worker costs no hash:
// with both workers held, ten HELLOs whose peers close are dropped, and
// the one honest HELLO behind them is served as soon as a worker is free.
func TestPlainGonePeersAreNotHashed(t *testing.T) {
	users := testUsers(t)
	server := PlainServer(users)
	release := holdPasswordWorkers(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const flood = 10
	errs := make(chan error, flood+1)
	var wg sync.WaitGroup
	defer wg.Wait()
	accept := func() {
		conn, err := ln.Accept()
		if err != nil {
			errs <- err
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(wait))
			_, err := Handshake(conn, server, "ROUTER", nil, 0)
			errs <- err
		}()
	}
	hello := cmdFrame(commandBody("HELLO", []byte{5}, []byte("alice"), []byte{6}, []byte("secret")))
	for range flood {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		accept()
		if err := (&cmdConn{conn: c}).exchangeGreetings("PLAIN", false); err != nil {
			t.Fatal(err)
		}
		c.Write(hello)
		// Wait until the server queued it, then hang up.
		testutil.CheckFor(t, wait, func() error {
			passwordChecks.mu.Lock()
			defer passwordChecks.mu.Unlock()
			if len(passwordChecks.queue) == 0 {
				return errors.New("HELLO not queued yet")
			}
			return nil
		})
		c.Close()
		passwordChecks.mu.Lock()
		passwordChecks.dropGoneLocked()
		passwordChecks.mu.Unlock()
	}
	for range flood {
		if err := <-errs; !errors.Is(err, errGone) {
			t.Fatalf("a HELLO whose peer left: got %v, want %v", err, errGone)
		}
	}
	cli, _ := PlainClient("alice", "secret")
	done := make(chan result, 1)
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			done <- result{err: err}
			return
		}
		c.SetDeadline(time.Now().Add(wait))
		s, err := Handshake(c, cli, "DEALER", nil, 0)
		if s != nil {
			s.Conn.Close()
		}
		done <- result{s, err}
	}()
	accept()
	testutil.CheckFor(t, wait, func() error {
		passwordChecks.mu.Lock()
		defer passwordChecks.mu.Unlock()
		if len(passwordChecks.queue) != 1 {
			return errors.New("honest HELLO not queued yet")
		}
		return nil
	})
	release()
	if r := <-done; r.err != nil {
		t.Fatalf("honest client: %v", r.err)
	}
	if err := <-errs; err != nil {
		t.Fatalf("server, honest client: %v", err)
	}
}

// A source that has bcryptPerSource HELLOs waiting is turned away at once
// (ERROR "300"); another source still queues, and is served before the
// busy source's next waiter.
func TestPlainPerSourceFairness(t *testing.T) {
	q := &bcryptPool{free: 1, pending: map[string]int{}, hashing: map[string]int{}}
	src, err := q.acquire(nil)
	if err != nil || src != "" {
		t.Fatalf("first acquire: %q %v", src, err)
	}
	// Fill the queue with waiters from "a" directly (acquire would block).
	for range bcryptPerSource {
		w := &bcryptWaiter{src: "a", ready: make(chan struct{})}
		q.queue = append(q.queue, w)
		q.pending["a"]++
	}
	q.hashing["a"] = 1 // "a" has a check running too (the worker held above counts as "")
	b := &bcryptWaiter{src: "b", ready: make(chan struct{})}
	q.queue = append(q.queue, b)
	q.pending["b"]++
	q.release("")
	select {
	case <-b.ready:
	default:
		t.Fatal("the waiter from the idle source was not served first")
	}
	if !b.granted || q.queue[0].src != "a" || len(q.queue) != bcryptPerSource {
		t.Fatalf("after release: b granted %v, queue %d", b.granted, len(q.queue))
	}
}

// A source with bcryptPerSource HELLOs pending is turned away at once
// when none of its waiters has gone.
func TestPlainPerSourceCap(t *testing.T) {
	q := &bcryptPool{free: 0, pending: map[string]int{}, hashing: map[string]int{}}
	conn := &memConn{r: bytes.NewReader(nil)}
	src := sourceOf(conn)
	for range bcryptPerSource {
		q.queue = append(q.queue, &bcryptWaiter{src: src, ready: make(chan struct{})})
		q.pending[src]++
	}
	start := time.Now()
	if _, err := q.acquire(conn); !errors.Is(err, errBusy) {
		t.Fatalf("got %v, want %v", err, errBusy)
	}
	if d := time.Since(start); d > bcryptWait/2 {
		t.Fatalf("refused after %v, want at once", d)
	}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func removeFile(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

// A server whose WELCOME or READY is broken, or whose short-term key is
// of low order, is refused by the CURVE client.
func TestCurveClientRefusesBrokenServer(t *testing.T) {
	srvKP, cliKP := mustKeyPair(t), mustKeyPair(t)
	tests := []struct {
		name    string
		welcome func(w []byte) []byte // the WELCOME body to send, from the right one
		ready   func(r []byte) []byte
		short   *Key // the server short-term key to announce
		wantMsg string
	}{
		{name: "WELCOME one byte long", welcome: func(w []byte) []byte { return append(w, 0) }, wantMsg: "WELCOME of 169 bytes"},
		{name: "WELCOME with a zero short-term key", short: lowOrderKey(t, "zero"), wantMsg: "WELCOME with a low-order short-term key"},
		{name: "READY cut short", ready: func(r []byte) []byte { return r[:20] }, wantMsg: "READY of 20 bytes"},
		{name: "READY tampered", ready: func(r []byte) []byte { r[len(r)-1] ^= 1; return r }, wantMsg: "READY does not open"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srvConn, conn := tcpPair(t)
			done := make(chan struct{})
			go func() {
				defer close(done)
				defer srvConn.Close()
				srvConn.SetDeadline(time.Now().Add(wait))
				fakeCurveServer(&cmdConn{conn: srvConn}, srvKP, tc.short, tc.welcome, tc.ready)
			}()
			conn.SetDeadline(time.Now().Add(wait))
			_, err := Handshake(conn, CurveClient(srvKP.Public, cliKP), "DEALER", nil, 0)
			wantErr(t, "client", err, ErrHandshake)
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("client error %q, want it to say %q", err, tc.wantMsg)
			}
			conn.Close()
			<-done
		})
	}
}

// fakeCurveServer answers a CURVE client as a server that knows kp, with
// a short-term key short (nil: a fresh one) and its WELCOME and READY
// bodies passed through welcome and ready (nil: as they are).
func fakeCurveServer(c *cmdConn, kp KeyPair, short *Key, welcome, ready func([]byte) []byte) {
	if c.exchangeGreetings("CURVE", true) != nil {
		return
	}
	body, err := c.readCommand()
	if err != nil || len(body) != helloSize {
		return
	}
	var clientShort [32]byte
	copy(clientShort[:], body[80:112])
	sPub, sSec, _ := box.GenerateKey(rand.Reader)
	var shared [32]byte
	if short != nil {
		*sPub = *short
		shared = *zeroShared()
	} else {
		box.Precompute(&shared, &clientShort, sSec)
	}
	var wn [16]byte
	w := append([]byte("\x07WELCOME"), wn[:]...)
	plain := append(bytes.Clone(sPub[:]), make([]byte, 96)...)
	w = box.Seal(w, plain, longNonce(nonceWelcome, wn[:]), &clientShort, (*[32]byte)(&kp.Secret))
	if welcome != nil {
		w = welcome(w)
	}
	if c.writeCommand(w) != nil {
		return
	}
	if _, err := c.readCommand(); err != nil {
		return
	}
	r := binary.BigEndian.AppendUint64([]byte("\x05READY"), 1)
	r = box.SealAfterPrecomputation(r, appendMetadata(nil, "ROUTER", nil), shortNonce(nonceReady, 1), &shared)
	if ready != nil {
		r = ready(r)
	}
	c.writeCommand(r)
	c.readCommand() // until the client hangs up
}

// PLAIN's client refuses a WELCOME with data.
func TestPlainClientRefusesBrokenWelcome(t *testing.T) {
	cli, _ := PlainClient("alice", "secret")
	input := append(greeting("PLAIN", true), cmdFrame(commandBody("WELCOME", []byte("x")))...)
	input = append(input, cmdFrame(commandBody("READY", appendMetadata(nil, "ROUTER", nil)))...)
	_, err := Handshake(&memConn{r: bytes.NewReader(input)}, cli, "DEALER", nil, 0)
	wantErr(t, "client", err, ErrHandshake)
	if !strings.Contains(err.Error(), "malformed WELCOME") {
		t.Fatalf("client error %q, want it to say malformed WELCOME", err)
	}
}

// PLAIN's server: a misnamed HELLO or INITIATE, or an INITIATE from an
// incompatible socket type, is refused even with the right password.
func TestPlainServerRefusesBrokenCommands(t *testing.T) {
	hello := cmdFrame(commandBody("HELLO", []byte{5}, []byte("alice"), []byte{6}, []byte("secret")))
	initiate := func(name, typ string) []byte {
		return cmdFrame(commandBody(name, appendMetadata(nil, typ, []byte("id"))))
	}
	server := PlainServer(testUsers(t))
	for _, tc := range []struct {
		name    string
		input   []byte
		wantMsg string
	}{
		{"HELLO misnamed", append(cmdFrame(commandBody("HELLX", []byte{5}, []byte("alice"), []byte{6}, []byte("secret"))), initiate("INITIATE", "DEALER")...), "expected HELLO"},
		{"INITIATE misnamed", append(bytes.Clone(hello), initiate("INITIATX", "DEALER")...), "expected INITIATE"},
		{"INITIATE from a PUB", append(bytes.Clone(hello), initiate("INITIATE", "PUB")...), "cannot talk to"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Handshake(&memConn{r: bytes.NewReader(append(greeting("PLAIN", false), tc.input...))}, server, "ROUTER", nil, 0)
			wantErr(t, "server", err, ErrHandshake)
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("server error %q, want it to say %q", err, tc.wantMsg)
			}
		})
	}
}

// A user file line must be user:hash with a user of 1 to 255 bytes.
func TestPlainUsersFileUserNames(t *testing.T) {
	h := hash(t, "a")
	for _, bad := range []string{":" + h, strings.Repeat("u", 256) + ":" + h} {
		if _, err := parsePlainUsers([]byte(bad + "\n")); err == nil || !strings.Contains(err.Error(), "want user:bcrypt-hash") {
			t.Errorf("line %.20q...: error %v, want \"want user:bcrypt-hash\"", bad, err)
		}
	}
}

// halfClosedHello returns the server's end of a TCP connection whose
// client sent a PLAIN greeting and HELLO (alice, secret) and then shut
// its writing side, as a flood that closes does. Closed when the test ends.
func halfClosedHello(t *testing.T) net.Conn {
	t.Helper()
	conn, c := tcpPair(t)
	c.Write(append(greeting("PLAIN", false), cmdFrame(commandBody("HELLO", []byte{5}, []byte("alice"), []byte{6}, []byte("secret")))...))
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	return conn
}

// A HELLO whose client has hung up (here: shut its side, as a flood
// that closes does) before a worker is free is not hashed: the peer is
// looked at right before the hash.
func TestPlainHalfClosedPeerNotHashed(t *testing.T) {
	defer func(d time.Duration) { hashSettle = d }(hashSettle)
	hashSettle = 0 // the look at the grant, not the one after the settle
	server := PlainServer(testUsers(t))
	conn := halfClosedHello(t)
	conn.SetDeadline(time.Now().Add(wait))
	if _, err := Handshake(conn, server, "ROUTER", nil, 0); !errors.Is(err, errGone) {
		t.Fatalf("got %v, want %v", err, errGone)
	}
}

// A busy PLAIN server tells the client so with ERROR "300".
func TestPlainBusyServerSendsError300(t *testing.T) {
	defer func(d time.Duration) { bcryptWait = d }(bcryptWait)
	bcryptWait = 50 * time.Millisecond
	holdPasswordWorkers(t)
	cli, _ := PlainClient("alice", "secret")
	srv, c := handshakePair(t, PlainServer(testUsers(t)), cli, "ROUTER", "DEALER")
	wantErr(t, "server", srv.err, ErrThrottled)
	wantErr(t, "client (told by ERROR)", c.err, ErrRefused)
	if !strings.Contains(c.err.Error(), `"300"`) {
		t.Fatalf("client error %q, want ERROR \"300\"", c.err)
	}
}

// A key or user removed while its handshake is between the check and the
// session's registration is refused: the list is looked at again after.
func TestRevokedDuringHandshake(t *testing.T) {
	defer func() { testHookBeforeTrack = nil }()
	srvKP, cliKP := mustKeyPair(t), mustKeyPair(t)
	dir := t.TempDir()
	writeFile(t, dir+"/c.key", CertText(cliKP, false))
	allow, err := NewAllowList(dir)
	if err != nil {
		t.Fatal(err)
	}
	testHookBeforeTrack = func() {
		os.Remove(dir + "/c.key")
		allow.Reload()
		allow.CloseRevoked()
	}
	srv, _ := handshakePair(t, CurveServer(srvKP, allow), CurveClient(srvKP.Public, cliKP), "ROUTER", "DEALER")
	wantErr(t, "CURVE server", srv.err, ErrRefused)
	if allow.Sessions() != 0 {
		t.Fatalf("CURVE sessions %d, want 0", allow.Sessions())
	}

	path := t.TempDir() + "/users"
	writeFile(t, path, "alice:"+hash(t, "a")+"\n")
	users, err := LoadPlainUsers(path)
	if err != nil {
		t.Fatal(err)
	}
	testHookBeforeTrack = func() {
		writeFile(t, path, "")
		users.Reload()
		users.CloseRevoked()
	}
	cli, _ := PlainClient("alice", "a")
	srv, _ = handshakePair(t, PlainServer(users), cli, "ROUTER", "DEALER")
	wantErr(t, "PLAIN server", srv.err, ErrRefused)
	if users.Sessions() != 0 {
		t.Fatalf("PLAIN sessions %d, want 0", users.Sessions())
	}
}

// A HELLO waits hashSettle before it may take a worker, and is dropped if
// its peer has gone by then, without waiting for a worker (here none is
// free: without the settle check it would wait bcryptWait).
func TestPlainSettleDropsGonePeer(t *testing.T) {
	defer func(d, w time.Duration) { hashSettle, bcryptWait = d, w }(hashSettle, bcryptWait)
	hashSettle, bcryptWait = 20*time.Millisecond, 30*time.Second
	holdPasswordWorkers(t)
	server := PlainServer(testUsers(t))
	conn := halfClosedHello(t)
	conn.SetDeadline(time.Now().Add(wait))
	start := time.Now()
	_, err := Handshake(conn, server, "ROUTER", nil, 0)
	if !errors.Is(err, errGone) {
		t.Fatalf("got %v after %v, want %v", err, time.Since(start), errGone)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("dropped after %v, want right after the settle", d)
	}
}
