package security_test

import (
	"fmt"
	"time"

	"github.com/zmq-proxy/zmq-proxy/transport"
	"github.com/zmq-proxy/zmq-proxy/transport/security"
)

// A ROUTER that requires CURVE and a DEALER that speaks it: the client
// side is security.CurveClient(server's public key, own key pair) in
// transport.Options, the server side security.CurveServer with an
// allow-list of client keys.
func ExampleCurveClient() {
	serverKeys, _ := security.GenerateKeyPair()
	clientKeys, _ := security.GenerateKeyPair()

	got := make(chan string, 1)
	router := transport.NewRouter(transport.Options{
		Security: security.CurveServer(serverKeys, security.AllowKeys(clientKeys.Public)),
		OnBatch: func(b *transport.Batch) {
			for _, m := range b.Msgs {
				got <- string(b.Peer) + ": " + string(m[1])
			}
			b.Release()
		},
	})
	defer router.Close()
	if err := router.Bind("tcp://127.0.0.1:0"); err != nil {
		panic(err)
	}

	dealer := transport.NewDealer(transport.Options{
		Identity: []byte("client-1"),
		Security: security.CurveClient(serverKeys.Public, clientKeys),
	})
	defer dealer.Close()
	if err := dealer.Connect(router.Addr()); err != nil {
		panic(err)
	}
	for dealer.Connected() == 0 {
		time.Sleep(time.Millisecond)
	}
	dealer.Send([][]byte{{}, []byte("hello over CURVE")}, nil)
	fmt.Println(<-got)
	// Output: client-1: hello over CURVE
}
