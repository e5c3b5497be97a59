package registry

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
)

// NewClient gives up within its dial timeout when etcd does not answer,
// with or without a user name, and says where it looked.
func TestNewClientBounded(t *testing.T) {
	silent, refused := testutil.Silent(t), testutil.FreeAddr(t)
	for _, tc := range []struct {
		name     string
		cfg      ClientConfig
		wantWait time.Duration // the bound NewClient must keep
	}{
		{"silent, default timeout", ClientConfig{Endpoints: []string{silent}}, DefaultDialTimeout},
		{"silent", ClientConfig{Endpoints: []string{silent}, DialTimeout: time.Second}, time.Second},
		{"refused", ClientConfig{Endpoints: []string{refused}, DialTimeout: time.Second}, time.Second},
		{"silent, user", ClientConfig{Endpoints: []string{silent}, Username: "u", Password: "p", DialTimeout: time.Second}, time.Second},
		{"refused, user", ClientConfig{Endpoints: []string{refused}, Username: "u", Password: "p", DialTimeout: time.Second}, time.Second},
		{"both", ClientConfig{Endpoints: []string{refused, silent}, DialTimeout: time.Second}, time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			cli, err := NewClient(tc.cfg)
			took := time.Since(start)
			if err == nil {
				cli.Close()
				t.Fatalf("NewClient: no error after %v, want one within %v", took, tc.wantWait)
			}
			// Generous above: a loaded machine; below: it waited, it did
			// not give up at the first refusal.
			if took > tc.wantWait+5*time.Second || took < tc.wantWait/2 {
				t.Errorf("NewClient failed after %v, want about %v", took, tc.wantWait)
			}
			if !errors.Is(err, ErrNoAnswer) || !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("error %q: want ErrNoAnswer and context.DeadlineExceeded", err)
			}
			want := "no answer from etcd at " + strings.Join(tc.cfg.Endpoints, ",") + " within " + tc.wantWait.String()
			if !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error %q: want it to begin %q", err, want)
			}
		})
	}
}

// With Background, NewClient does not wait: the proxy binds its ports
// while etcd is down.
func TestNewClientBackground(t *testing.T) {
	start := time.Now()
	cli, err := NewClient(ClientConfig{Endpoints: []string{testutil.Silent(t)}, DialTimeout: 10 * time.Second, Background: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("NewClient with Background took %v, want it not to wait for the 10s dial timeout", took)
	}
}

// An etcd that answers is no error; one that refuses is etcd's error, at
// once, not a timeout.
func TestNewClientAnswered(t *testing.T) {
	etcd := testutil.Embedded(t)
	cli, err := NewClient(ClientConfig{Endpoints: etcd.Endpoints(), DialTimeout: wait})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	testutil.EnableEtcdAuth(t, cli, "rootpw")
	start := time.Now()
	bad, err := NewClient(ClientConfig{Endpoints: etcd.Endpoints(), Username: "root", Password: "wrong", DialTimeout: wait})
	if err == nil {
		bad.Close()
		t.Fatal("a wrong password: no error")
	}
	if !errors.Is(err, rpctypes.ErrAuthFailed) || errors.Is(err, ErrNoAnswer) {
		t.Errorf("a wrong password: got %v, want etcd's authentication failure", err)
	}
	if took := time.Since(start); took > wait/2 {
		t.Errorf("a wrong password took %v, want etcd's answer, not the dial timeout", took)
	}
	// Anonymous on an etcd that authenticates: refused, yet it answered.
	anon, err := NewClient(ClientConfig{Endpoints: etcd.Endpoints(), DialTimeout: wait})
	if err != nil {
		t.Fatalf("anonymous client of an etcd with authentication: %v, want a client (etcd answered)", err)
	}
	anon.Close()
}
