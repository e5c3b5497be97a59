package security

import (
	"bytes"
	"fmt"
	"testing"

	"golang.org/x/crypto/nacl/secretbox"
)

func TestCurveGoToGo(t *testing.T) {
	srvKP, cliKP := mustKeyPair(t), mustKeyPair(t)
	srv, cli := handshakePair(t, CurveServer(srvKP, AllowKeys(cliKP.Public)), CurveClient(srvKP.Public, cliKP), "ROUTER", "DEALER")
	if srv.err != nil || cli.err != nil {
		t.Fatalf("handshake: server %v, client %v", srv.err, cli.err)
	}
	if got, want := srv.s.User, cliKP.Public.String(); got != want {
		t.Errorf("server sees user %q, want %q", got, want)
	}
	if got := srv.s.Peer[PropIdentity]; got != "cli" {
		t.Errorf("server sees identity %q, want cli", got)
	}
	if got := cli.s.Peer[PropSocketType]; got != "ROUTER" {
		t.Errorf("client sees socket type %q, want ROUTER", got)
	}
	big := bytes.Repeat([]byte("x"), 200000)
	msgs := [][][]byte{
		{[]byte("a"), {}, []byte("hello")},
		{big, []byte("tail")},
		{{0, 1, 2, 255}},
	}
	for _, m := range msgs {
		if err := writeMsg(cli.s.Conn, m...); err != nil {
			t.Fatal(err)
		}
	}
	fr := &frameReader{r: srv.s.Conn}
	for i, want := range msgs {
		got, _, err := fr.readMsg()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("message %d: got %d frames %.40q, want %.40q", i, len(got), got, want)
		}
	}
	// And back.
	if err := writeMsg(srv.s.Conn, []byte("back")); err != nil {
		t.Fatal(err)
	}
	got, _, err := (&frameReader{r: cli.s.Conn}).readMsg()
	if err != nil || string(got[0]) != "back" {
		t.Fatalf("client got %q, %v; want [back]", got, err)
	}
}

// msgKey is secretbox (crypto_box after precomputation) with the subkey
// computed once: for every length around the 32-byte first block, and a
// long one, it seals what secretbox seals and opens what secretbox opens.
func TestMsgKeyIsSecretbox(t *testing.T) {
	var shared [32]byte
	for i := range shared {
		shared[i] = byte(i * 7)
	}
	k := newMsgKey(&shared, nonceMessageC)
	lengths := []int{0, 1, 31, 32, 33, 63, 64, 65, 100, 1000, 70000}
	for i, n := range lengths {
		msg := bytes.Repeat([]byte{byte(i + 1)}, n)
		nonce := uint64(i*1000 + 1)
		want := secretbox.Seal(nil, msg, shortNonce(nonceMessageC, nonce), &shared)
		got := k.seal([]byte("prefix"), msg, nonce)
		if !bytes.Equal(got[6:], want) || string(got[:6]) != "prefix" {
			t.Fatalf("length %d: seal differs from secretbox", n)
		}
		plain, ok := k.open([]byte("p"), want, nonce)
		if !ok || !bytes.Equal(plain[1:], msg) {
			t.Fatalf("length %d: open of secretbox's box failed", n)
		}
		if _, ok := k.open(nil, want, nonce+1); ok {
			t.Fatalf("length %d: opened with another nonce", n)
		}
		bad := bytes.Clone(want)
		bad[len(bad)-1] ^= 1
		if _, ok := k.open(nil, bad, nonce); ok {
			t.Fatalf("length %d: opened a tampered box", n)
		}
	}
	if _, ok := k.open(nil, make([]byte, 15), 1); ok {
		t.Fatal("opened a box shorter than its tag")
	}
}
