package security

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"testing"

	"golang.org/x/crypto/nacl/box"
)

// benchBurst is 64 casts of the v1.0 envelope with a 100-byte payload,
// encoded as plain ZMTP frames, as a peer's writer hands them over.
func benchBurst() []byte {
	var b bytes.Buffer
	for range 64 {
		writeMsg(&b, []byte("server-host/compute/node-1/7a1b"), []byte{}, []byte("1.0"), []byte("client-host/4f0c"),
			[]byte("2"), []byte("6a0e7c1e-6c1f-4a5e-9d7e-0d6f1b2c3d4e"), bytes.Repeat([]byte("p"), 100))
	}
	return b.Bytes()
}

// BenchmarkSealBurst: what CURVE adds to a writer's burst.
func BenchmarkSealBurst(b *testing.B) {
	var key [32]byte
	bc := newBoxConn(&memConn{w: io.Discard}, &key, nonceMessageC, nonceMessageS, 1<<20)
	burst := benchBurst()
	b.SetBytes(int64(len(burst)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := bc.Write(burst); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*64), "ns/msg")
}

// BenchmarkOpenBurst: what CURVE adds to a reader's burst.
func BenchmarkOpenBurst(b *testing.B) {
	var key [32]byte
	burst := benchBurst()
	var wire bytes.Buffer
	seal := newBoxConn(&memConn{w: &wire}, &key, nonceMessageC, nonceMessageS, 1<<20)
	const bursts = 64
	for range bursts {
		seal.Write(burst)
	}
	sealed := wire.Bytes()
	buf := make([]byte, 64<<10)
	b.SetBytes(int64(len(burst)) * bursts)
	b.ReportAllocs()
	for b.Loop() {
		bc := newBoxConn(&memConn{r: bytes.NewReader(sealed)}, &key, nonceMessageS, nonceMessageC, 1<<20)
		for {
			if _, err := bc.Read(buf); err != nil {
				break
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*64*bursts), "ns/msg")
}

// BenchmarkCurveServerHello: what a HELLO costs the server, up to its
// WELCOME: one X25519 for the box of HELLO and WELCOME (box.Open then
// box.Seal would take two) and one key generation.
func BenchmarkCurveServerHello(b *testing.B) {
	srvKP, cliKP := mustKeyPair(b), mustKeyPair(b)
	const pool = 256
	inputs := make([][]byte, pool)
	for i := range inputs {
		pub, sec, err := box.GenerateKey(rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		h := append([]byte("\x05HELLO\x01\x00"), make([]byte, 72)...)
		h = append(h, pub[:]...)
		h = binary.BigEndian.AppendUint64(h, 1)
		h = box.Seal(h, make([]byte, 64), shortNonce(nonceHello, 1), (*[32]byte)(&srvKP.Public), sec)
		inputs[i] = append(greeting("CURVE", false), cmdFrame(h)...)
	}
	var server Mechanism
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if i%pool == 0 {
			// A new server: the last one remembers these HELLOs.
			server = unlimited(CurveServer(srvKP, AllowKeys(cliKP.Public)))
		}
		if _, err := Handshake(&memConn{r: bytes.NewReader(inputs[i%pool])}, server, "ROUTER", nil, 0); !errors.Is(err, io.EOF) {
			b.Fatalf("handshake ended with %v, want EOF after WELCOME", err)
		}
		i++
	}
}
