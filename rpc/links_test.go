package rpc

import (
	"testing"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
	"github.com/zmq-proxy/zmq-proxy/registry"
	"github.com/zmq-proxy/zmq-proxy/transport"
)

// Clients and servers follow the proxies' records by one rule: a link to
// every central proxy at the address of their side, none to a local
// publisher proxy or to a record without that address; a record that
// turns into one of those loses its link.
func TestLinksFollow(t *testing.T) {
	var addrs [2]string
	for i := range addrs {
		r := transport.NewRouter(transport.Options{})
		if err := r.Bind("tcp://127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		addrs[i] = r.Addr()
	}
	for _, tt := range []struct {
		side string
		addr func(registry.Record) string
		// strip removes the address this side connects to.
		strip func(*registry.Record)
	}{
		{"client", clientAddr, func(r *registry.Record) { r.Frontend = "" }},
		{"server", serverAddr, func(r *registry.Record) { r.Backend, r.Frontend = "", "" }},
	} {
		t.Run(tt.side, func(t *testing.T) {
			ls := newLinks(transport.Options{}, testutil.Quiet(), func(_ *link, b *transport.Batch) { b.Release() }, func(*link, bool) {})
			defer ls.close()
			recs := map[string]registry.Record{
				"a": {ID: "a", Kind: "double-router", Host: "n1", Frontend: addrs[0], Backend: addrs[0], Publisher: "tcp://127.0.0.1:1"},
				"b": {ID: "b", Kind: "single-router", Host: "n2", Frontend: addrs[1], Publisher: "tcp://127.0.0.1:2"},
				// A local record with a router address still gets no link.
				"c": {ID: "c", Kind: registry.KindLocal, Host: "n1", Frontend: addrs[1], Publisher: "tcp://127.0.0.1:3"},
			}
			ls.follow(recs, tt.addr)
			waitLinks(t, ls, 2)

			a := recs["a"]
			a.Kind = registry.KindLocal
			recs["a"] = a
			ls.follow(recs, tt.addr)
			waitLinks(t, ls, 1)

			b := recs["b"]
			tt.strip(&b)
			recs["b"] = b
			ls.follow(recs, tt.addr)
			waitLinks(t, ls, 0)
		})
	}
}
