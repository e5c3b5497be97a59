package security

import (
	"bytes"
	"fmt"
	"testing"
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
