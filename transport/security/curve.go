package security

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"io"
	"time"

	"golang.org/x/crypto/curve25519"
	"golang.org/x/crypto/nacl/box"
	"golang.org/x/crypto/nacl/secretbox"
	"golang.org/x/crypto/salsa20/salsa"
)

// CurveZMQ nonce prefixes (RFC 26).
const (
	nonceHello    = "CurveZMQHELLO---"
	nonceWelcome  = "WELCOME-"
	nonceCookie   = "COOKIE--"
	nonceInitiate = "CurveZMQINITIATE"
	nonceVouch    = "VOUCH---"
	nonceReady    = "CurveZMQREADY---"
	nonceMessageC = "CurveZMQMESSAGEC" // client to server
	nonceMessageS = "CurveZMQMESSAGES" // server to client
)

// Sizes of the fixed parts of the CurveZMQ commands.
const (
	helloSize      = 200 // "\x05HELLO", version, 72 padding, C', short nonce, box 80
	welcomeSize    = 168 // "\x07WELCOME", long nonce 16, box 144
	cookieSize     = 96  // long nonce 16, secretbox 80
	initiateMin    = 257 // "\x08INITIATE", cookie 96, short nonce 8, box >= 144
	readyMin       = 30  // "\x05READY", short nonce 8, box >= 16
	overhead       = box.Overhead
	msgHeaderSize  = 16 // "\x07MESSAGE", short nonce 8
	msgOverheadAll = msgHeaderSize + overhead + 1
)

// shortNonce is a 24-byte nonce: a 16-byte prefix and a counter.
func shortNonce(prefix string, n uint64) *[24]byte {
	var nonce [24]byte
	copy(nonce[:], prefix)
	binary.BigEndian.PutUint64(nonce[16:], n)
	return &nonce
}

// longNonce is an 8-byte prefix and 16 given bytes.
func longNonce(prefix string, tail []byte) *[24]byte {
	var nonce [24]byte
	copy(nonce[:], prefix)
	copy(nonce[8:], tail)
	return &nonce
}

func randomBytes(b []byte) error {
	_, err := io.ReadFull(rand.Reader, b)
	return err
}

// sharedKey is the NaCl box key between our secret and a peer's public
// key (what box.Precompute computes), by curve25519.X25519, which refuses
// the peer's key when it is of low order or zero: the product is then all
// zeros, a key anyone can compute. box.Precompute (ScalarMult) does not
// check; libsodium's crypto_box_beforenm, which libzmq uses, refuses such
// keys the same way.
func sharedKey(dst *[32]byte, peer, secret *[32]byte) error {
	s, err := curve25519.X25519(secret[:], peer[:])
	if err != nil {
		return err
	}
	copy(dst[:], s)
	clear(s)
	var zeros [16]byte
	salsa.HSalsa20(dst, &zeros, dst, &salsa.Sigma)
	return nil
}

type curveServer struct {
	kp    KeyPair
	allow *AllowList
	guard *curveGuard
}

// CurveServer is the server side of CURVE (RFC 26) with the long-term key
// pair kp. A client is admitted only if its long-term public key is in
// allow; a nil or empty list refuses every client. HELLOs are rate-limited
// per source address and in all, and a HELLO replayed (the same client
// short-term key twice) is refused before any X25519 (guard.go).
func CurveServer(kp KeyPair, allow *AllowList) Mechanism {
	return &curveServer{kp: kp, allow: allow, guard: newCurveGuard()}
}

func (*curveServer) Name() string   { return "CURVE" }
func (*curveServer) AsServer() bool { return true }

func (m *curveServer) handshake(c *cmdConn, socketType string, identity []byte, maxMessage int64) (*Session, error) {
	// HELLO: version, 72 zero bytes of padding, C', short nonce and
	// Box[64 zero bytes](C'->S).
	body, err := c.readCommand()
	if err != nil {
		return nil, err
	}
	if len(body) < 6 || !bytes.Equal(body[:6], []byte("\x05HELLO")) {
		return nil, fmt.Errorf("%w: CURVE: expected HELLO", ErrHandshake)
	}
	if len(body) != helloSize {
		return nil, fmt.Errorf("%w: CURVE: HELLO of %d bytes, want %d", ErrHandshake, len(body), helloSize)
	}
	if body[6] != 1 || body[7] != 0 {
		return nil, fmt.Errorf("%w: CURVE: HELLO version %d.%d, want 1.0", ErrHandshake, body[6], body[7])
	}
	// RFC 26 makes the padding zeros (it is there so that HELLO is not
	// shorter than WELCOME: no amplification). libzmq does not look at it;
	// we refuse what no CurveZMQ client sends, before any X25519.
	for _, b := range body[8:80] {
		if b != 0 {
			return nil, fmt.Errorf("%w: CURVE: HELLO padding is not zeros", ErrHandshake)
		}
	}
	var clientShort Key
	copy(clientShort[:], body[80:112])
	if m.guard.replayed(clientShort) {
		return nil, fmt.Errorf("%w: CURVE: HELLO with a client short-term key already used", ErrReplayed)
	}
	if !m.guard.allow(sourceOf(c.conn), time.Now()) {
		return nil, refuse(c, "300", fmt.Errorf("%w: CURVE: too many HELLOs, try again", ErrThrottled))
	}
	helloNonce := binary.BigEndian.Uint64(body[112:120])
	// s*C' opens the HELLO and seals the WELCOME: computed once for both
	// (box.Open then box.Seal would compute it twice; libzmq does).
	var helloKey [32]byte
	defer clear(helloKey[:])
	if err := sharedKey(&helloKey, (*[32]byte)(&clientShort), (*[32]byte)(&m.kp.Secret)); err != nil {
		return nil, fmt.Errorf("%w: CURVE: HELLO with a low-order short-term key", ErrHandshake)
	}
	var zeros [64]byte
	var plain [64]byte
	opened, ok := box.OpenAfterPrecomputation(plain[:0], body[120:200], shortNonce(nonceHello, helloNonce), &helloKey)
	if !ok {
		return nil, fmt.Errorf("%w: CURVE: HELLO does not open with our key (the client has another server key)", ErrRefused)
	}
	if subtle.ConstantTimeCompare(opened, zeros[:]) != 1 {
		return nil, fmt.Errorf("%w: CURVE: HELLO signature is not 64 zero bytes", ErrHandshake)
	}
	m.guard.remember(clientShort)

	// WELCOME: Box[S' + cookie](S->C'), cookie = nonce + SecretBox[C' + s'](K).
	// From here to INITIATE the server keeps only K: C' and s' travel in
	// the cookie and are forgotten.
	serverShortPub, serverShortSec, err := box.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	var cookieKey [32]byte
	var cookieNonce, welcomeNonce [16]byte
	if err := randomBytes(cookieKey[:]); err != nil {
		return nil, err
	}
	if err := randomBytes(cookieNonce[:]); err != nil {
		return nil, err
	}
	if err := randomBytes(welcomeNonce[:]); err != nil {
		return nil, err
	}
	var cookiePlain [64]byte
	copy(cookiePlain[:32], clientShort[:])
	copy(cookiePlain[32:], serverShortSec[:])
	welcomePlain := make([]byte, 0, 128)
	welcomePlain = append(welcomePlain, serverShortPub[:]...)
	welcomePlain = append(welcomePlain, cookieNonce[:]...)
	welcomePlain = secretbox.Seal(welcomePlain, cookiePlain[:], longNonce(nonceCookie, cookieNonce[:]), &cookieKey)
	welcome := make([]byte, 0, welcomeSize)
	welcome = append(welcome, "\x07WELCOME"...)
	welcome = append(welcome, welcomeNonce[:]...)
	welcome = box.SealAfterPrecomputation(welcome, welcomePlain, longNonce(nonceWelcome, welcomeNonce[:]), &helloKey)
	clear(cookiePlain[:])
	clear(welcomePlain)
	clear(serverShortSec[:])
	clear(helloKey[:])
	clientShort = Key{}
	if err := c.writeCommand(welcome); err != nil {
		return nil, err
	}

	// INITIATE: cookie, short nonce, Box[C + vouch + metadata](C'->S').
	body, err = c.readCommand()
	if err != nil {
		return nil, err
	}
	if len(body) < 9 || !bytes.Equal(body[:9], []byte("\x08INITIATE")) {
		return nil, fmt.Errorf("%w: CURVE: expected INITIATE", ErrHandshake)
	}
	if len(body) < initiateMin {
		return nil, fmt.Errorf("%w: CURVE: INITIATE of %d bytes, want at least %d", ErrHandshake, len(body), initiateMin)
	}
	cookie, ok := secretbox.Open(cookiePlain[:0], body[25:105], longNonce(nonceCookie, body[9:25]), &cookieKey)
	if !ok {
		return nil, fmt.Errorf("%w: CURVE: INITIATE carries a cookie we did not make", ErrHandshake)
	}
	copy(clientShort[:], cookie[:32])
	copy(serverShortSec[:], cookie[32:64])
	clear(cookiePlain[:])
	defer clear(serverShortSec[:])
	initNonce := binary.BigEndian.Uint64(body[105:113])
	if initNonce <= helloNonce {
		return nil, fmt.Errorf("%w: CURVE: INITIATE nonce %d does not follow HELLO's %d", ErrHandshake, initNonce, helloNonce)
	}
	var shared [32]byte
	if err := sharedKey(&shared, (*[32]byte)(&clientShort), serverShortSec); err != nil {
		// C' opened the HELLO, so this cannot fail; checked all the same.
		return nil, fmt.Errorf("%w: CURVE: low-order short-term key", ErrHandshake)
	}
	initPlain, ok := box.OpenAfterPrecomputation(make([]byte, 0, len(body)-113-overhead), body[113:], shortNonce(nonceInitiate, initNonce), &shared)
	if !ok {
		return nil, fmt.Errorf("%w: CURVE: INITIATE does not open", ErrHandshake)
	}
	// The vouch, Box[C' + S](C->S'), proves that the holder of C made C'
	// for us: not for another server (S), not for another connection (C').
	var clientKey Key
	copy(clientKey[:], initPlain[:32])
	var vouchKey [32]byte
	defer clear(vouchKey[:])
	if err := sharedKey(&vouchKey, (*[32]byte)(&clientKey), serverShortSec); err != nil {
		return nil, fmt.Errorf("%w: CURVE: the client's long-term key is of low order", ErrHandshake)
	}
	clear(serverShortSec[:])
	var vouchBuf [64]byte
	vouch, ok := box.OpenAfterPrecomputation(vouchBuf[:0], initPlain[48:128], longNonce(nonceVouch, initPlain[32:48]), &vouchKey)
	if !ok {
		return nil, fmt.Errorf("%w: CURVE: the vouch does not open with the client's long-term key", ErrHandshake)
	}
	if !bytes.Equal(vouch[:32], clientShort[:]) {
		return nil, fmt.Errorf("%w: CURVE: the vouch names another short-term key", ErrHandshake)
	}
	if !bytes.Equal(vouch[32:64], m.kp.Public[:]) {
		return nil, fmt.Errorf("%w: CURVE: the vouch names another server key", ErrHandshake)
	}
	if !m.allow.Allowed(clientKey) {
		return nil, refuse(c, "400", fmt.Errorf("%w: CURVE: client key %s is not allowed", ErrRefused, clientKey))
	}
	meta, err := finishMetadata(initPlain[128:], socketType)
	if err != nil {
		return nil, err
	}

	// READY: short nonce, Box[metadata](S'->C').
	bc := newBoxConn(c.conn, &shared, nonceMessageS, nonceMessageC, maxMessage)
	bc.peerNonce = initNonce
	defer clear(shared[:])
	// Registered before READY and checked again, so that a reload of the
	// allow-list at any moment either sees this session or is seen by it.
	live, conn := m.allow.track(bc, clientKey)
	if !m.allow.Allowed(clientKey) {
		live.Close()
		return nil, fmt.Errorf("%w: CURVE: client key %s was removed from the allow-list", ErrRefused, clientKey)
	}
	ready := append([]byte("\x05READY"), make([]byte, 8)...)
	n := bc.nextNonce()
	binary.BigEndian.PutUint64(ready[6:], n)
	ready = box.SealAfterPrecomputation(ready, appendMetadata(nil, socketType, identity), shortNonce(nonceReady, n), &shared)
	if err := c.writeCommand(ready); err != nil {
		live.Close()
		return nil, err
	}
	return &Session{Conn: conn, Peer: meta, User: clientKey.String()}, nil
}

type curveClient struct {
	server Key
	kp     KeyPair
}

// CurveClient is the client side of CURVE: it talks only to the server
// whose long-term public key is serverKey, and proves itself with kp.
func CurveClient(serverKey Key, kp KeyPair) Mechanism {
	return &curveClient{server: serverKey, kp: kp}
}

func (*curveClient) Name() string   { return "CURVE" }
func (*curveClient) AsServer() bool { return false }

func (m *curveClient) handshake(c *cmdConn, socketType string, identity []byte, maxMessage int64) (*Session, error) {
	shortPub, shortSec, err := box.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	defer clear(shortSec[:])
	server := (*[32]byte)(&m.server)

	// HELLO, nonce 1.
	var sendNonce uint64 = 1
	hello := make([]byte, 0, helloSize)
	hello = append(hello, "\x05HELLO\x01\x00"...)
	hello = append(hello, make([]byte, 72)...)
	hello = append(hello, shortPub[:]...)
	hello = binary.BigEndian.AppendUint64(hello, sendNonce)
	hello = box.Seal(hello, make([]byte, 64), shortNonce(nonceHello, sendNonce), server, shortSec)
	sendNonce++
	if err := c.writeCommand(hello); err != nil {
		return nil, err
	}

	// WELCOME: Box[S' + cookie](S->C').
	var serverShort [32]byte
	var cookie [cookieSize]byte
	if err := expect(c, "WELCOME", func(data []byte) error {
		if len(data) != welcomeSize-8 {
			return fmt.Errorf("%w: CURVE: WELCOME of %d bytes, want %d", ErrHandshake, len(data)+8, welcomeSize)
		}
		var buf [128]byte
		plain, ok := box.Open(buf[:0], data[16:], longNonce(nonceWelcome, data[:16]), server, shortSec)
		if !ok {
			return fmt.Errorf("%w: CURVE: WELCOME does not open (not the server we know)", ErrHandshake)
		}
		copy(serverShort[:], plain[:32])
		copy(cookie[:], plain[32:128])
		return nil
	}); err != nil {
		return nil, err
	}
	var shared [32]byte
	if err := sharedKey(&shared, &serverShort, shortSec); err != nil {
		return nil, fmt.Errorf("%w: CURVE: WELCOME with a low-order short-term key", ErrHandshake)
	}

	// INITIATE: cookie, nonce 2, Box[C + vouch + metadata](C'->S'), with
	// vouch = long nonce + Box[C' + S](C->S').
	var vouchNonce [16]byte
	if err := randomBytes(vouchNonce[:]); err != nil {
		return nil, err
	}
	var vouchPlain [64]byte
	copy(vouchPlain[:32], shortPub[:])
	copy(vouchPlain[32:], m.server[:])
	initPlain := make([]byte, 0, 128+64)
	initPlain = append(initPlain, m.kp.Public[:]...)
	initPlain = append(initPlain, vouchNonce[:]...)
	initPlain = box.Seal(initPlain, vouchPlain[:], longNonce(nonceVouch, vouchNonce[:]), &serverShort, (*[32]byte)(&m.kp.Secret))
	initPlain = appendMetadata(initPlain, socketType, identity)
	initiate := make([]byte, 0, 113+len(initPlain)+overhead)
	initiate = append(initiate, "\x08INITIATE"...)
	initiate = append(initiate, cookie[:]...)
	initiate = binary.BigEndian.AppendUint64(initiate, sendNonce)
	initiate = box.SealAfterPrecomputation(initiate, initPlain, shortNonce(nonceInitiate, sendNonce), &shared)
	sendNonce++
	if err := c.writeCommand(initiate); err != nil {
		return nil, err
	}

	// READY: short nonce, Box[metadata](S'->C').
	var meta Metadata
	var readyNonce uint64
	if err := expect(c, "READY", func(data []byte) error {
		if len(data) < readyMin-6 {
			return fmt.Errorf("%w: CURVE: READY of %d bytes, want at least %d", ErrHandshake, len(data)+6, readyMin)
		}
		readyNonce = binary.BigEndian.Uint64(data[:8])
		plain, ok := box.OpenAfterPrecomputation(nil, data[8:], shortNonce(nonceReady, readyNonce), &shared)
		if !ok {
			return fmt.Errorf("%w: CURVE: READY does not open", ErrHandshake)
		}
		var err error
		meta, err = finishMetadata(plain, socketType)
		return err
	}); err != nil {
		return nil, err
	}
	bc := newBoxConn(c.conn, &shared, nonceMessageC, nonceMessageS, maxMessage)
	bc.sendNonce, bc.peerNonce = sendNonce, readyNonce
	return &Session{Conn: bc, Peer: meta}, nil
}
