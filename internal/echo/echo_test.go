package echo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
	"github.com/zmq-proxy/zmq-proxy/rpc"
	"github.com/zmq-proxy/zmq-proxy/transport"
)

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// --record: one whole line per handler run, in the order of the runs,
// fields quoted where they would run together, appended to what the file
// held; runs of methods without a handler are not lines.
func TestEchoRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "runs.log")
	if err := os.WriteFile(path, []byte("before\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rec, err := OpenRecorder(path, "s1", quietLog())
	if err != nil {
		t.Fatal(err)
	}
	h := Handlers("s1", rec)
	ctx := context.Background()
	for _, m := range []*rpc.Message{
		{Type: transport.TypeCall, Method: "echo", MessageID: "id-1", Args: []byte(`{"seq": 7}`)},
		{Type: transport.TypeCast, Method: "echo", MessageID: "id-2", Args: []byte(`{"seq": "a b"}`)},
		{Type: transport.TypeCall, Method: "fail", MessageID: "id 3\n", Args: []byte(`{}`)},
		{Type: transport.TypeCastFanout, Method: "sleep", MessageID: "", Args: []byte(`{"ms": 0, "seq": 1e3}`)},
	} {
		_, _ = h[m.Method](ctx, m)
	}
	// Read before the close: the lines are in the file as the handlers
	// start, not when the process ends (a kill -9 has no close).
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := "before\n" +
		"s1 CALL echo id-1 7\n" +
		`s1 CAST echo id-2 "\"a b\""` + "\n" +
		`s1 CALL fail "id 3\n" -` + "\n" +
		`s1 CAST_FANOUT sleep "" 1e3` + "\n"
	if string(b) != want {
		t.Fatalf("record file:\n%s\nwant:\n%s", b, want)
	}
	rec.Close()
	if _, err := OpenRecorder(filepath.Join(t.TempDir(), "no", "such", "dir"), "s1", quietLog()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("openRecorder in a missing directory: got %v, want ErrNotExist", err)
	}
}

// Handlers running at once write whole lines: none is torn or lost.
func TestEchoRecordConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "runs.log")
	rec, err := OpenRecorder(path, "s2", quietLog())
	if err != nil {
		t.Fatal(err)
	}
	h := Handlers("s2", rec)["echo"]
	const workers, each = 8, 250
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				seq := w*each + i
				_, _ = h(context.Background(), &rpc.Message{Type: transport.TypeCast, Method: "echo",
					MessageID: fmt.Sprintf("m%d", seq), Args: fmt.Appendf(nil, `{"seq": %d, "pad": %q}`, seq, strings.Repeat("x", 200))})
			}
		})
	}
	wg.Wait()
	rec.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		f := strings.Fields(l)
		if len(f) != 5 || f[0] != "s2" || f[1] != "CAST" || "m"+f[4] != f[3] || seen[f[4]] {
			t.Fatalf("line %q: want s2 CAST echo m<seq> <seq>, each seq once", l)
		}
		seen[f[4]] = true
	}
	if len(seen) != workers*each {
		t.Fatalf("%d lines, want %d", len(seen), workers*each)
	}
}

// sleep replies as echo does, after args.ms; a bad ms is a TypeError; a
// context that ends cuts it short with its error.
func TestEchoSleep(t *testing.T) {
	sleep := Handlers("s1", nil)["sleep"]
	start := time.Now()
	got, err := sleep(context.Background(), &rpc.Message{Method: "sleep", Args: []byte(`{"ms": 50, "seq": 3}`)})
	if took := time.Since(start); err != nil || took < 50*time.Millisecond {
		t.Fatalf("sleep 50 ms: got %v, %v after %v; want a reply after at least 50 ms", got, err, took)
	}
	if m, _ := got.(map[string]any); m["server"] != "s1" || m["seq"] != float64(3) || m["ms"] != float64(50) {
		t.Fatalf("sleep reply: got %v, want its args and server s1", got)
	}
	for _, args := range []string{`{}`, `{"ms": -1}`, `{"ms": 1.5}`, `{"ms": "10"}`, `{"ms": 3600001}`, `[1]`, `null`} {
		_, err := sleep(context.Background(), &rpc.Message{Method: "sleep", Args: []byte(args)})
		var re *rpc.RemoteError
		if !errors.As(err, &re) || re.Class != "TypeError" {
			t.Errorf("sleep %s: got %v, want a TypeError", args, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := sleep(ctx, &rpc.Message{Method: "sleep", Args: []byte(`{"ms": 3600000}`)})
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("sleep cancelled: got %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("sleep of an hour went on after its context was cancelled")
	}
}

// A run is recorded when it starts, not when it ends: a server killed in
// the middle of a handler has the line of the run it did not finish.
func TestEchoRecordBeforeRun(t *testing.T) {
	path := filepath.Join(t.TempDir(), "runs.log")
	rec, err := OpenRecorder(path, "s1", quietLog())
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	sleep := Handlers("s1", rec)["sleep"]
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = sleep(ctx, &rpc.Message{Type: transport.TypeCall, Method: "sleep", MessageID: "m1", Args: []byte(`{"ms": 3600000, "seq": 9}`)})
	}()
	testutil.CheckFor(t, 10*time.Second, func() error {
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if string(b) != "s1 CALL sleep m1 9\n" {
			return fmt.Errorf("record %q while the handler runs, want its line", b)
		}
		return nil
	})
	select {
	case <-done:
		t.Fatal("the sleep of an hour ended before its context")
	default:
	}
	cancel()
	<-done
}
