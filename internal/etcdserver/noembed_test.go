//go:build noembedetcd

package etcdserver

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Without the embedded etcd, Local on an address where nothing listens
// fails with ErrNoEmbedded and a message that names the address and what
// to do.
func TestLocalNoEmbedded(t *testing.T) {
	addr := "127.0.0.1:1" // port 1: nothing listens there
	eps, srv, err := Local(context.Background(), Options{
		ClientAddr: addr,
		DataDir:    filepath.Join(t.TempDir(), "etcd"),
		Logger:     slog.New(slog.DiscardHandler),
	})
	if !errors.Is(err, ErrNoEmbedded) {
		t.Fatalf("Local = %v, %v, %v; want an error wrapping ErrNoEmbedded", eps, srv, err)
	}
	for _, want := range []string{addr, "-tags noembedetcd", "-u zmq+etcd://"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}
