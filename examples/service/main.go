// Command service is a service with one method, "add", and a client that
// calls it through the proxies it finds in etcd. Start a proxy first
// (zmq-proxy -H 127.0.0.1), then: go run ./examples/service
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"time"

	"github.com/zmq-proxy/zmq-proxy/registry"
	"github.com/zmq-proxy/zmq-proxy/rpc"
)

func main() {
	endpoint := flag.String("etcd", "127.0.0.1:2379", "etcd endpoint")
	flag.Parse()
	if err := run(os.Stdout, *endpoint); err != nil {
		log.Fatal(err)
	}
}

func run(out io.Writer, endpoint string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// Fails within 5 s, naming the endpoint, when etcd does not answer.
	reg, err := registry.Open(ctx, registry.OpenConfig{Etcd: registry.ClientConfig{Endpoints: []string{endpoint}}})
	if err != nil {
		return err
	}
	defer reg.Close()

	srv, err := rpc.NewServer(ctx, rpc.ServerConfig{Registry: reg, Topic: "calc", Server: "s1",
		Handlers: map[string]rpc.Handler{
			"add": func(_ context.Context, m *rpc.Message) (any, error) {
				var a struct{ X, Y int }
				if err := json.Unmarshal(m.Args, &a); err != nil {
					return nil, err
				}
				return a.X + a.Y, nil
			},
		}})
	if err != nil {
		return err
	}
	defer srv.Close()

	cli, err := rpc.NewClient(ctx, rpc.ClientConfig{Registry: reg, Acks: true})
	if err != nil {
		return err
	}
	defer cli.Close()
	sum, err := cli.Call(ctx, rpc.Target{Topic: "calc"}, "add", map[string]int{"x": 2, "y": 3})
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "2 + 3 =", string(sum))
	return nil
}
