package zmqproxytest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/zmq-proxy/zmq-proxy/rpc"
	"github.com/zmq-proxy/zmq-proxy/zmqproxytest"
)

// A service's test: a whole system in the test's process, a server of the
// service's topic, and a call through the proxy. In a test function,
// zmqproxytest.Start(t) does what New and Close do here.
func Example() {
	sys, err := zmqproxytest.New(zmqproxytest.Options{})
	if err != nil {
		panic(err)
	}
	defer sys.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	srv, err := rpc.NewServer(ctx, rpc.ServerConfig{Registry: sys.Registry(), Topic: "demo", Server: "s1",
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
	cli, err := rpc.NewClient(ctx, rpc.ClientConfig{Registry: sys.Registry(), Acks: true})
	if err != nil {
		panic(err)
	}
	defer cli.Close()

	sum, err := cli.Call(ctx, rpc.Target{Topic: "demo"}, "add", map[string]int{"x": 2, "y": 3})
	fmt.Println(string(sum), err)
	// Output: 5 <nil>
}
