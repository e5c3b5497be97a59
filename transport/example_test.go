package transport_test

import (
	"fmt"
	"time"

	"github.com/zmq-proxy/zmq-proxy/transport"
)

// A ROUTER receives each message with the sender's identity, and answers
// by identity; a DEALER sends round-robin over the routers it is connected
// to. Receiving is a callback that gets whole read bursts.
func Example() {
	got := make(chan []string, 1)
	router := transport.NewRouter(transport.Options{
		OnBatch: func(b *transport.Batch) {
			defer b.Release() // frames alias a pooled buffer: copy what you keep
			for _, m := range b.Msgs {
				frames := []string{string(b.Peer)}
				for _, f := range m {
					frames = append(frames, string(f))
				}
				got <- frames
			}
		},
	})
	defer router.Close()
	if err := router.Bind("tcp://127.0.0.1:0"); err != nil {
		panic(err)
	}

	dealer := transport.NewDealer(transport.Options{Identity: []byte("client-1")})
	defer dealer.Close()
	if err := dealer.Connect(router.Addr()); err != nil {
		panic(err)
	}
	for dealer.Connected() == 0 { // connecting is asynchronous
		time.Sleep(time.Millisecond)
	}
	dealer.Send([][]byte{{}, []byte("1.0"), []byte("2"), []byte("server-1"), []byte("m1")}, [][]byte{[]byte("payload")})
	fmt.Printf("%q\n", <-got)
	// Output: ["client-1" "" "1.0" "2" "server-1" "m1" "payload"]
}
