package rpc_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/zmq-proxy/zmq-proxy/actors"
	"github.com/zmq-proxy/zmq-proxy/internal/etcdserver"
	"github.com/zmq-proxy/zmq-proxy/registry"
	"github.com/zmq-proxy/zmq-proxy/rpc"
)

// A server of topic "demo" and a client that calls it, through a proxy
// found in etcd.
func Example() {
	reg, stop := exampleSystem() // an etcd with one proxy registered in it
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	srv, err := rpc.NewServer(ctx, rpc.ServerConfig{Registry: reg, Topic: "demo", Server: "s1",
		Handlers: map[string]rpc.Handler{
			"add": func(_ context.Context, m *rpc.Message) (any, error) {
				var a struct{ X, Y int }
				err := json.Unmarshal(m.Args, &a)
				return a.X + a.Y, err
			},
		}})
	if err != nil {
		panic(err)
	}
	defer srv.Close()

	cli, err := rpc.NewClient(ctx, rpc.ClientConfig{Registry: reg, Acks: true})
	if err != nil {
		panic(err)
	}
	defer cli.Close()
	sum, err := cli.Call(ctx, rpc.Target{Topic: "demo"}, "add", map[string]int{"x": 2, "y": 3})
	fmt.Println(string(sum), err)
	// Output: 5 <nil>
}

// A failure raised by the server's handler is a *rpc.RemoteError.
func ExampleRemoteError() {
	reg, stop := exampleSystem()
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv, err := rpc.NewServer(ctx, rpc.ServerConfig{Registry: reg, Topic: "demo",
		Handlers: map[string]rpc.Handler{
			"div": func(context.Context, *rpc.Message) (any, error) {
				return nil, &rpc.RemoteError{Class: "ZeroDivisionError", Module: "builtins", Message: "division by zero"}
			},
		}})
	if err != nil {
		panic(err)
	}
	defer srv.Close()
	cli, err := rpc.NewClient(ctx, rpc.ClientConfig{Registry: reg})
	if err != nil {
		panic(err)
	}
	defer cli.Close()

	_, err = cli.Call(ctx, rpc.Target{Topic: "demo"}, "div", nil)
	var re *rpc.RemoteError
	if errors.As(err, &re) {
		fmt.Println(re.Class, re.Message)
	}
	_, err = cli.Call(ctx, rpc.Target{Topic: "nobody"}, "div", nil)
	fmt.Println(errors.Is(err, rpc.ErrNoServer))
	// Output:
	// ZeroDivisionError division by zero
	// true
}

// exampleSystem starts an embedded etcd on a random port and a proxy
// registered in it, and returns that etcd as a registry.
func exampleSystem() (registry.Registry, func()) {
	quiet := slog.New(slog.NewTextHandler(discard{}, &slog.HandlerOptions{Level: slog.LevelError}))
	dir, err := os.MkdirTemp("", "rpc-example")
	if err != nil {
		panic(err)
	}
	e, err := etcdserver.Start(etcdserver.Options{ClientAddr: "127.0.0.1:0", DataDir: filepath.Join(dir, "etcd"), Logger: quiet})
	if err != nil {
		panic(err)
	}
	p, err := actors.New(actors.Config{Host: "127.0.0.1", Logger: quiet,
		Registry: actors.RegistryConfig{Endpoints: e.Endpoints()}})
	if err != nil {
		panic(err)
	}
	reg, err := registry.Open(context.Background(), registry.OpenConfig{Etcd: registry.ClientConfig{Endpoints: e.Endpoints()}})
	if err != nil {
		panic(err)
	}
	for !p.Registered() {
		time.Sleep(10 * time.Millisecond)
	}
	return reg, func() {
		reg.Close()
		p.Close()
		e.Close()
		os.RemoveAll(dir)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
