package security

import (
	"encoding/binary"

	"golang.org/x/crypto/poly1305" //nolint:staticcheck // the one-time-key use secretbox makes of it, below
	"golang.org/x/crypto/salsa20/salsa"
)

// msgKey is NaCl's crypto_box after precomputation (secretbox: XSalsa20
// and Poly1305) for the MESSAGE commands of one direction of one CURVE
// connection, with XSalsa20's first step done once.
//
// XSalsa20 turns a 24-byte nonce into a subkey, HSalsa20(key, nonce[:16]),
// and a Salsa20 nonce, nonce[16:]. Every MESSAGE nonce of a direction is
// the same 16-byte prefix ("CurveZMQMESSAGEC" or "...S") and a counter, so
// the subkey is the same for all of them: computing it once saves about
// half of the work per frame. What follows is nacl/secretbox's Seal and
// Open with that subkey given; TestMsgKeyIsSecretbox checks that the two
// agree byte for byte, and the libzmq interop tests that libzmq agrees.
//
// golang.org/x/crypto/poly1305 is deprecated because a Poly1305 key must
// never be used twice; here, as in secretbox, each key is the first
// keystream block of a nonce that is never reused.
type msgKey struct {
	sub [32]byte
}

func newMsgKey(shared *[32]byte, prefix string) *msgKey {
	var hNonce [16]byte
	copy(hNonce[:], prefix)
	k := new(msgKey)
	salsa.HSalsa20(&k.sub, &hNonce, shared, &salsa.Sigma)
	return k
}

// start returns the Salsa20 counter block for nonce n and the first
// keystream block (its first 32 bytes are the Poly1305 key).
func (k *msgKey) start(n uint64) (counter [16]byte, first [64]byte) {
	binary.BigEndian.PutUint64(counter[:8], n)
	salsa.XORKeyStream(first[:], first[:], &counter, &k.sub)
	return counter, first
}

// seal appends the box of msg under nonce n (tag, then ciphertext) to out.
func (k *msgKey) seal(out, msg []byte, n uint64) []byte {
	counter, first := k.start(n)
	var polyKey [32]byte
	copy(polyKey[:], first[:32])
	ret, o := grow(out, len(msg)+poly1305.TagSize)
	tagOut, ct := o[:poly1305.TagSize], o[poly1305.TagSize:]
	head := min(len(msg), 32)
	for i, x := range msg[:head] {
		ct[i] = first[32+i] ^ x
	}
	counter[8] = 1
	salsa.XORKeyStream(ct[head:], msg[head:], &counter, &k.sub)
	var tag [poly1305.TagSize]byte
	poly1305.Sum(&tag, ct, &polyKey)
	copy(tagOut, tag[:])
	return ret
}

// open appends the plaintext of box under nonce n to out, or reports
// false if box was not sealed with this key and nonce.
func (k *msgKey) open(out, box []byte, n uint64) ([]byte, bool) {
	if len(box) < poly1305.TagSize {
		return nil, false
	}
	counter, first := k.start(n)
	var polyKey [32]byte
	copy(polyKey[:], first[:32])
	var tag [poly1305.TagSize]byte
	copy(tag[:], box)
	ct := box[poly1305.TagSize:]
	if !poly1305.Verify(&tag, ct, &polyKey) {
		return nil, false
	}
	ret, o := grow(out, len(ct))
	head := min(len(ct), 32)
	for i, x := range ct[:head] {
		o[i] = first[32+i] ^ x
	}
	counter[8] = 1
	salsa.XORKeyStream(o[head:], ct[head:], &counter, &k.sub)
	return ret, true
}

// grow extends in by n bytes, returning the whole and the new tail.
func grow(in []byte, n int) (whole, tail []byte) {
	if total := len(in) + n; cap(in) >= total {
		whole = in[:total]
	} else {
		whole = make([]byte, total)
		copy(whole, in)
	}
	return whole, whole[len(in):]
}
