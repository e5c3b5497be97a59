// Package testutil holds helpers shared by the tests.
package testutil

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"testing"
	"time"
)

// CheckFor calls check until it returns nil, and fails the test with the
// last error if it does not within timeout. The error says what is still
// missing ("got 3 replies, want 5"), so a failure explains itself. The
// timeout bounds failure only: a passing test never waits for it.
func CheckFor(t testing.TB, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	wait := time.Millisecond
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %v", timeout, err)
		}
		time.Sleep(wait)
		wait = min(2*wait, 20*time.Millisecond)
	}
}

// FreeAddr returns 127.0.0.1:PORT where PORT and PORT+1 were both free a
// moment ago (an embedded etcd takes the next port for its peers). The
// port is drawn below Linux's ephemeral range (32768 and up), so that the
// outgoing connections of tests running beside this one cannot take it
// between now and its use, as they can take a port the kernel chose.
func FreeAddr(t testing.TB) string {
	t.Helper()
	for range 200 {
		port := 10000 + rand.IntN(32768-10000-1)
		a, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		b, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port+1))
		a.Close()
		if err != nil {
			continue
		}
		b.Close()
		return fmt.Sprintf("127.0.0.1:%d", port)
	}
	t.Fatal("no two free consecutive ports below 32768 in 200 tries")
	return ""
}

// FreePorts returns n distinct ports picked as FreeAddr picks them.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	seen := make(map[int]bool, n)
	out := make([]int, 0, n)
	for len(out) < n {
		_, p, _ := net.SplitHostPort(FreeAddr(t))
		port, _ := strconv.Atoi(p)
		if !seen[port] && !seen[port-1] && !seen[port+1] {
			seen[port] = true
			out = append(out, port)
		}
	}
	return out
}

// Quiet is a logger that drops every record: below Error they are not
// even formatted. For the code under test's Logger options.
func Quiet() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelError}))
}

// CheckTrue is CheckFor for a condition: it waits until cond holds, and
// fails the test with what (what did not happen) if it does not within
// timeout.
func CheckTrue(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	CheckFor(t, timeout, func() error {
		if cond() {
			return nil
		}
		return errors.New(what)
	})
}
