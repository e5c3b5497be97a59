package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/zmq-proxy/zmq-proxy/actors"
)

// adminServer is the steering endpoint, libzmq's zmq_proxy_steerable over
// HTTP: POST /pause stops reading from the frontend, POST /resume reads
// again, GET /stats returns the counters as JSON. It listens apart from
// /metrics, on loopback unless told otherwise, since it changes what the
// proxy does.
type adminServer struct {
	srv *http.Server
	wg  sync.WaitGroup
}

// adminReply is the answer to POST /pause and /resume.
type adminReply struct {
	Paused  bool `json:"paused"`
	Changed bool `json:"changed"` // false: it was already so
}

// adminStats is the answer to GET /stats.
type adminStats struct {
	Kind    string                        `json:"kind"`
	Paused  bool                          `json:"paused"`
	Sockets map[string]actors.SocketStats `json:"sockets"`
}

// startAdmin listens on addr and serves p's steering endpoint.
func startAdmin(addr string, p *actors.Proxy, kind actors.Kind, logger *slog.Logger) (*adminServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin address %s: %w", addr, err)
	}
	a := &adminServer{}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /pause", func(w http.ResponseWriter, _ *http.Request) {
		if kind == actors.KindLocalPublisher {
			http.Error(w, "a local publisher proxy has no frontend to pause", http.StatusConflict)
			return
		}
		writeJSON(w, adminReply{Paused: true, Changed: p.Pause()})
	})
	mux.HandleFunc("POST /resume", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, adminReply{Paused: p.Paused(), Changed: p.Resume()})
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, adminStats{Kind: kind.String(), Paused: p.Paused(), Sockets: p.AllStats()})
	})
	a.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("admin server failed", "err", err)
		}
	}()
	logger.Info("admin endpoint", "addr", ln.Addr().String())
	return a, nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// Close stops the server and waits for it.
func (a *adminServer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := a.srv.Shutdown(ctx)
	a.wg.Wait()
	return err
}

// parseAdminAddr parses --admin-addr: host:port, the host loopback when
// not given; "" is off.
func parseAdminAddr(s string) (string, error) {
	addr, err := parseListenAddr(s)
	if err != nil || addr == "" {
		return addr, err
	}
	host, port, _ := net.SplitHostPort(addr)
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}
