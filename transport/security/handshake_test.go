package security

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

// serverGets runs m's server side over an in-memory input and returns
// the handshake's error.
func serverGets(m Mechanism, typ string, input []byte) error {
	_, err := Handshake(&memConn{r: bytes.NewReader(input)}, m, typ, nil, 0)
	return err
}

func cmdFrame(body []byte) []byte { return appendCommandFrame(nil, body) }

func TestHandshakeRefusesBrokenPeers(t *testing.T) {
	srvKP, cliKP := mustKeyPair(t), mustKeyPair(t)
	// Not the server the transcript is made with: that one remembers its
	// HELLO and would refuse every variant of it as a replay.
	curve := CurveServer(srvKP, AllowKeys(cliKP.Public))
	plain := PlainServer(testUsers(t))
	fromClient, _ := transcript(t, CurveServer(srvKP, AllowKeys(cliKP.Public)), CurveClient(srvKP.Public, cliKP), "ROUTER", "DEALER")
	g := greeting("CURVE", false)
	hello := fromClient[64 : 64+2+helloSize]
	withHello := func(mut func(b []byte)) []byte {
		b := bytes.Clone(hello)
		mut(b[2:])
		return append(bytes.Clone(g), b...)
	}
	oldVersion := bytes.Clone(g)
	oldVersion[10] = 2
	longHdr := append(bytes.Clone(g), flagCommand|flagLong)
	longHdr = binary.BigEndian.AppendUint64(longHdr, maxCommand+1)
	tests := []struct {
		name  string
		mech  Mechanism
		input []byte
		want  error
	}{
		{"not ZMTP", curve, []byte("GET / HTTP/1.1\r\n\r\n" + string(make([]byte, 64))), ErrHandshake},
		{"ZMTP 2", curve, oldVersion, ErrHandshake},
		{"NULL peer on a CURVE socket", curve, greeting("NULL", false), ErrRefused},
		{"PLAIN peer on a CURVE socket", curve, greeting("PLAIN", false), ErrRefused},
		{"command larger than the bound", curve, longHdr, ErrHandshake},
		{"data frame instead of a command", curve, append(bytes.Clone(g), 0, 1, 'x'), ErrHandshake},
		{"MORE flag on a command", curve, append(bytes.Clone(g), flagCommand|flagMore, 1, 'x'), ErrHandshake},
		{"INITIATE first", curve, append(bytes.Clone(g), cmdFrame(commandBody("INITIATE"))...), ErrHandshake},
		{"short HELLO", curve, append(bytes.Clone(g), cmdFrame(commandBody("HELLO", make([]byte, 10)))...), ErrHandshake},
		{"HELLO version 2.0", curve, withHello(func(b []byte) { b[6] = 2 }), ErrHandshake},
		{"HELLO padding not zeros", curve, withHello(func(b []byte) { b[8+71] = 1 }), ErrHandshake},
		{"HELLO box tampered", curve, withHello(func(b []byte) { b[150] ^= 1 }), ErrRefused},
		{"HELLO with another C'", curve, withHello(func(b []byte) { b[90] ^= 1 }), ErrRefused},
		{"PLAIN: WELCOME instead of HELLO", plain, append(greeting("PLAIN", false), cmdFrame(commandBody("WELCOME"))...), ErrHandshake},
		{"PLAIN: HELLO with extra bytes", plain, append(greeting("PLAIN", false), cmdFrame(commandBody("HELLO", []byte{1, 'a', 1, 'b', 'c'}))...), ErrHandshake},
		{"PLAIN: HELLO without password", plain, append(greeting("PLAIN", false), cmdFrame(commandBody("HELLO", []byte{1, 'a'}))...), ErrHandshake},
		{"PLAIN: empty command", plain, append(greeting("PLAIN", false), cmdFrame(nil)...), ErrHandshake},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantErr(t, "handshake", serverGets(tc.mech, "ROUTER", tc.input), tc.want)
		})
	}
}

// A recorded session replayed on a new connection is refused: by the
// server that saw it at its HELLO (the client's short-term key is used
// twice), and by any other server with the same key (a restarted one) at
// its INITIATE, whose cookie ties it to its own connection.
func TestCurveReplayedInitiateRefused(t *testing.T) {
	srvKP, cliKP := mustKeyPair(t), mustKeyPair(t)
	server := CurveServer(srvKP, AllowKeys(cliKP.Public))
	fromClient, _ := transcript(t, server, CurveClient(srvKP.Public, cliKP), "ROUTER", "DEALER")
	err := serverGets(server, "ROUTER", fromClient)
	wantErr(t, "replayed handshake, same server", err, ErrReplayed)
	err = serverGets(CurveServer(srvKP, AllowKeys(cliKP.Public)), "ROUTER", fromClient)
	wantErr(t, "replayed handshake, restarted server", err, ErrHandshake)
	if want := "cookie"; !bytes.Contains([]byte(err.Error()), []byte(want)) {
		t.Errorf("error %q does not mention the %s", err, want)
	}
}

func TestSocketTypeMismatch(t *testing.T) {
	srvKP, cliKP := mustKeyPair(t), mustKeyPair(t)
	srv, cli := handshakePair(t, CurveServer(srvKP, AllowKeys(cliKP.Public)), CurveClient(srvKP.Public, cliKP), "PUB", "DEALER")
	wantErr(t, "server", srv.err, ErrHandshake)
	if cli.err == nil {
		t.Error("client: handshake with a PUB completed, want an error")
	}
}

func TestEmptyAllowListRefusesEveryone(t *testing.T) {
	srvKP, cliKP := mustKeyPair(t), mustKeyPair(t)
	srv, cli := handshakePair(t, CurveServer(srvKP, AllowKeys()), CurveClient(srvKP.Public, cliKP), "ROUTER", "DEALER")
	wantErr(t, "server", srv.err, ErrRefused)
	wantErr(t, "client (told by ERROR)", cli.err, ErrRefused)
}

// sealed returns the wire bytes of msgs sealed by a client-side boxConn.
func sealed(t *testing.T, shared *[32]byte, msgs ...[][]byte) []byte {
	t.Helper()
	var w bytes.Buffer
	bc := newBoxConn(&memConn{w: &w}, shared, nonceMessageC, nonceMessageS, 1<<20)
	for _, m := range msgs {
		var plain bytes.Buffer
		writeMsg(&plain, m...)
		if _, err := bc.Write(plain.Bytes()); err != nil {
			t.Fatal(err)
		}
	}
	return w.Bytes()
}

func readAll(shared *[32]byte, maxMsg int64, wire []byte) ([][][]byte, error) {
	return readMsgs(newBoxConn(&memConn{r: bytes.NewReader(wire)}, shared, nonceMessageS, nonceMessageC, maxMsg))
}

func TestMessageReaderRefuses(t *testing.T) {
	var key [32]byte
	key[3] = 9
	one := sealed(t, &key, [][]byte{[]byte("one")})
	two := sealed(t, &key, [][]byte{[]byte("one")}, [][]byte{[]byte("two")})
	second := two[len(one):]
	flipped := bytes.Clone(one)
	flipped[len(flipped)-1] ^= 1
	withMore := bytes.Clone(one)
	withMore[0] |= flagMore
	notMessage := cmdFrame(append([]byte("\x07MESSAGX"), make([]byte, 30)...))
	tests := []struct {
		name   string
		wire   []byte
		maxMsg int64
		want   error
		wantN  int // messages handed on before the error
	}{
		{"replayed MESSAGE", append(bytes.Clone(one), one...), 1 << 20, ErrDecrypt, 1},
		{"reordered MESSAGEs", append(bytes.Clone(second), one...), 1 << 20, ErrDecrypt, 1},
		{"flipped byte", flipped, 1 << 20, ErrDecrypt, 0},
		{"MORE flag on the wire", withMore, 1 << 20, ErrDecrypt, 0},
		{"not a MESSAGE", notMessage, 1 << 20, ErrDecrypt, 0},
		{"larger than the maximum", sealed(t, &key, [][]byte{make([]byte, 1000)}), 100, ErrTooLarge, 0},
		{"in order", two, 1 << 20, io.EOF, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := readAll(&key, tc.maxMsg, tc.wire)
			wantErr(t, "reader", err, tc.want)
			if len(got) != tc.wantN {
				t.Errorf("handed on %d messages, want %d", len(got), tc.wantN)
			}
		})
	}
	// Another key cannot read it.
	var other [32]byte
	if _, err := readAll(&other, 1<<20, one); !errors.Is(err, ErrDecrypt) {
		t.Errorf("another key: %v, want ErrDecrypt", err)
	}
}

// A write that does not hold whole frames is refused, not half sealed.
func TestMessageWriterNeedsWholeFrames(t *testing.T) {
	var key [32]byte
	bc := newBoxConn(&memConn{w: io.Discard}, &key, nonceMessageC, nonceMessageS, 1<<20)
	for _, b := range [][]byte{{0}, {0, 5, 'a'}, {flagLong, 0, 0}} {
		if _, err := bc.Write(b); err == nil {
			t.Errorf("Write(%x) = nil error, want one", b)
		}
	}
}

// Reads of any size see the same bytes; a big burst is decrypted in
// bounded steps.
func TestMessageReaderSmallReads(t *testing.T) {
	var key [32]byte
	var msgs [][][]byte
	for i := range 50 {
		msgs = append(msgs, [][]byte{bytes.Repeat([]byte{byte(i)}, i*97), {byte(i)}})
	}
	wire := sealed(t, &key, msgs...)
	bc := newBoxConn(&memConn{r: &slowReader{wire}}, &key, nonceMessageS, nonceMessageC, 1<<20)
	fr := &frameReader{r: &tinyReads{bc}}
	for i, want := range msgs {
		got, _, err := fr.readMsg()
		if err != nil || !bytes.Equal(got[0], want[0]) || !bytes.Equal(got[1], want[1]) {
			t.Fatalf("message %d: %v", i, err)
		}
	}
}

type slowReader struct{ b []byte }

func (r *slowReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 7)], r.b)
	r.b = r.b[n:]
	return n, nil
}

type tinyReads struct{ r io.Reader }

func (t *tinyReads) Read(p []byte) (int, error) { return t.r.Read(p[:min(len(p), 3)]) }

// countingConn counts the writes that reach the connection.
type countingConn struct {
	memConn
	writes int
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes++
	return c.memConn.Write(p)
}

// A burst of messages is sealed into one buffer and written with one
// call, however many frames it holds (one MESSAGE per frame inside).
func TestSealBurstIsOneWrite(t *testing.T) {
	var key [32]byte
	var wire bytes.Buffer
	cc := &countingConn{memConn: memConn{w: &wire}}
	bc := newBoxConn(cc, &key, nonceMessageC, nonceMessageS, 1<<20)
	var burst bytes.Buffer
	var msgs [][][]byte
	for i := range 100 {
		m := [][]byte{[]byte("a"), {}, bytes.Repeat([]byte{byte(i)}, i*7)}
		msgs = append(msgs, m)
		writeMsg(&burst, m...)
	}
	if _, err := bc.Write(burst.Bytes()); err != nil {
		t.Fatal(err)
	}
	if cc.writes != 1 {
		t.Fatalf("a burst of 100 messages took %d writes, want 1", cc.writes)
	}
	got, err := readAll(&key, 1<<20, wire.Bytes())
	if !errors.Is(err, io.EOF) || len(got) != len(msgs) {
		t.Fatalf("read back %d messages (%v), want %d", len(got), err, len(msgs))
	}
	for i := range msgs {
		for j := range msgs[i] {
			if !bytes.Equal(got[i][j], msgs[i][j]) {
				t.Fatalf("message %d frame %d differs", i, j)
			}
		}
	}
}

// scriptConn hands out one chunk per Read and records, for each Read,
// how large a buffer it was given and whether the boxConn held its big
// buffers at that moment.
type scriptConn struct {
	memConn
	chunks [][]byte
	bc     *boxConn
	sizes  []int
	held   []bool
}

func (c *scriptConn) Read(p []byte) (int, error) {
	c.sizes = append(c.sizes, len(p))
	c.held = append(c.held, c.bc.rbuf != nil || c.bc.out != nil)
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	if n == len(c.chunks[0]) {
		c.chunks = c.chunks[1:]
	} else {
		c.chunks[0] = c.chunks[0][n:]
	}
	return n, nil
}

// A quiet connection waits for its next bytes without holding its large
// buffers; a busy one reads into them.
func TestMessageReaderQuietHoldsNoBuffers(t *testing.T) {
	var key [32]byte
	small := sealed(t, &key, [][]byte{[]byte("ping")})
	var msgs [][][]byte
	for range 200 {
		msgs = append(msgs, [][]byte{bytes.Repeat([]byte("x"), 100)})
	}
	all := sealed(t, &key, append([][][]byte{{[]byte("ping")}}, msgs...)...)
	sc := &scriptConn{chunks: [][]byte{all[:len(small)], all[len(small):]}}
	bc := newBoxConn(sc, &key, nonceMessageS, nonceMessageC, 1<<20)
	sc.bc = bc
	_, err := readMsgs(bc)
	if !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	// Read 1: quiet, small. Read 2 (the burst): quiet again after the
	// small message, so small, without big buffers. Then large reads.
	if sc.sizes[0] != len(bc.small) || sc.held[0] {
		t.Errorf("first read: buffer %d (held %v), want %d and nothing held", sc.sizes[0], sc.held[0], len(bc.small))
	}
	if sc.sizes[1] != len(bc.small) || sc.held[1] {
		t.Errorf("read after a small message: buffer %d (held %v), want %d and nothing held", sc.sizes[1], sc.held[1], len(bc.small))
	}
	if sc.sizes[2] <= len(bc.small) {
		t.Errorf("read in the middle of a burst: buffer %d, want a large one", sc.sizes[2])
	}
}

// readMsgs reads bc's messages until an error, and returns them with it.
func readMsgs(bc *boxConn) ([][][]byte, error) {
	fr := &frameReader{r: bc}
	var out [][][]byte
	for {
		m, _, err := fr.readMsg()
		if err != nil {
			return out, err
		}
		out = append(out, m)
	}
}
