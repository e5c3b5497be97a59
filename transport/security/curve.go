package security

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"io"

	"golang.org/x/crypto/nacl/box"
	"golang.org/x/crypto/nacl/secretbox"
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

type curveServer struct {
	kp    KeyPair
	allow *AllowList
}

// CurveServer is the server side of CURVE (RFC 26) with the long-term key
// pair kp. A client is admitted only if its long-term public key is in
// allow; a nil or empty list refuses every client.
func CurveServer(kp KeyPair, allow *AllowList) Mechanism {
	return &curveServer{kp: kp, allow: allow}
}

func (*curveServer) Name() string   { return "CURVE" }
func (*curveServer) AsServer() bool { return true }

func (m *curveServer) handshake(c *cmdConn, socketType string, identity []byte, maxMessage int64) (*Session, error) {
	// HELLO: C' and Box[64 zero bytes](C'->S).
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
	var clientShort Key
	copy(clientShort[:], body[80:112])
	helloNonce := binary.BigEndian.Uint64(body[112:120])
	var zeros [64]byte
	var plain [64]byte
	opened, ok := box.Open(plain[:0], body[120:200], shortNonce(nonceHello, helloNonce), (*[32]byte)(&clientShort), (*[32]byte)(&m.kp.Secret))
	if !ok || subtle.ConstantTimeCompare(opened, zeros[:]) != 1 {
		return nil, fmt.Errorf("%w: CURVE: HELLO does not open with our key (the client has another server key)", ErrRefused)
	}

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
	welcome = box.Seal(welcome, welcomePlain, longNonce(nonceWelcome, welcomeNonce[:]), (*[32]byte)(&clientShort), (*[32]byte)(&m.kp.Secret))
	clear(cookiePlain[:])
	clear(welcomePlain)
	clear(serverShortSec[:])
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
	initNonce := binary.BigEndian.Uint64(body[105:113])
	if initNonce <= helloNonce {
		return nil, fmt.Errorf("%w: CURVE: INITIATE nonce %d does not follow HELLO's %d", ErrHandshake, initNonce, helloNonce)
	}
	var shared [32]byte
	box.Precompute(&shared, (*[32]byte)(&clientShort), serverShortSec)
	initPlain, ok := box.OpenAfterPrecomputation(make([]byte, 0, len(body)-113-overhead), body[113:], shortNonce(nonceInitiate, initNonce), &shared)
	if !ok {
		clear(serverShortSec[:])
		return nil, fmt.Errorf("%w: CURVE: INITIATE does not open", ErrHandshake)
	}
	// The vouch, Box[C' + S](C->S'), proves that the holder of C made C'.
	var clientKey Key
	copy(clientKey[:], initPlain[:32])
	var vouchBuf [64]byte
	vouch, ok := box.Open(vouchBuf[:0], initPlain[48:128], longNonce(nonceVouch, initPlain[32:48]), (*[32]byte)(&clientKey), serverShortSec)
	clear(serverShortSec[:])
	if !ok || !bytes.Equal(vouch[:32], clientShort[:]) || !bytes.Equal(vouch[32:64], m.kp.Public[:]) {
		return nil, fmt.Errorf("%w: CURVE: the vouch does not prove the client's key", ErrHandshake)
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
	ready := append([]byte("\x05READY"), make([]byte, 8)...)
	n := bc.nextNonce()
	binary.BigEndian.PutUint64(ready[6:], n)
	ready = box.SealAfterPrecomputation(ready, appendMetadata(nil, socketType, identity), shortNonce(nonceReady, n), &shared)
	if err := c.writeCommand(ready); err != nil {
		return nil, err
	}
	return &Session{Conn: bc, Peer: meta, User: clientKey.String()}, nil
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
	box.Precompute(&shared, &serverShort, shortSec)

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
