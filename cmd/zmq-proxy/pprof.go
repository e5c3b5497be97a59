package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
)

// startPprof serves Go's profiles on an address of its own, and only
// when --pprof-addr asks for it: a CPU profile or a trace costs the proxy
// CPU for as long as the caller likes, and the heap profile shows what it
// holds, so they are not on the metrics address, which a cluster's
// Prometheus reaches. (nats-server too serves profiles only on its own
// prof_port, off by default.)
func startPprof(addr string, logger *slog.Logger) (*httpEndpoint, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("pprof address %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	s := serveHTTP(ln, mux, "pprof", logger)
	if !loopbackHost(ln.Addr().String()) {
		logger.Warn("pprof endpoint on a non-loopback address: anyone who reaches it can profile the proxy", "addr", ln.Addr().String())
	} else {
		logger.Info("pprof endpoint", "addr", ln.Addr().String())
	}
	return s, nil
}
