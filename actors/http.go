package actors

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/zmq-proxy/zmq-proxy/internal/addr"
	"github.com/zmq-proxy/zmq-proxy/internal/metrics"
)

// The proxy's HTTP endpoints, each on an address of its own and each off
// unless its address is configured:
//
//   - metrics (Config.MetricsAddr): /metrics, /healthz, /readyz, what a
//     cluster's Prometheus and kubelet reach;
//   - admin (Config.AdminAddr): libzmq's zmq_proxy_steerable over HTTP,
//     POST /pause, POST /resume, GET /stats; it changes what the proxy
//     does, so it is guarded (adminGuard);
//   - pprof (Config.PprofAddr): Go's profiles. A CPU profile or a trace
//     costs the proxy CPU for as long as the caller likes, and the heap
//     profile shows what it holds, so they are not on the metrics address.
//     (nats-server too serves profiles only on its own prof_port, off by
//     default.)

// Names of the endpoints, in setAddr and in the logs.
const (
	metricsName = "metrics"
	adminName   = "admin"
	pprofName   = "pprof"
)

// httpEndpoint is one of the proxy's HTTP servers. Close stops it; the
// proxy's gate waits for its goroutine.
type httpEndpoint struct {
	srv *http.Server
}

// Close stops the server, giving requests under way 2 s.
func (e *httpEndpoint) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return e.srv.Shutdown(ctx)
}

// startHTTP starts the endpoints whose addresses are configured. A
// failure is logged as "NAME endpoint not started" and returned.
func (p *Proxy) startHTTP() error {
	for _, e := range []struct {
		name, address string
		handler       func() http.Handler
	}{
		{metricsName, p.cfg.MetricsAddr, p.metricsHandler},
		{adminName, p.cfg.AdminAddr, func() http.Handler { return adminGuard(p.cfg.AdminToken, p.adminHandler()) }},
		{pprofName, p.cfg.PprofAddr, pprofHandler},
	} {
		if e.address == "" {
			continue
		}
		if err := p.listenHTTP(e.name, e.address, e.handler()); err != nil {
			if e.name != metricsName {
				p.log.Error(e.name+" endpoint not started", "err", err)
			}
			return err
		}
	}
	return nil
}

// listenHTTP serves h on address until Close, through the proxy's gate.
func (p *Proxy) listenHTTP(name, address string, h http.Handler) error {
	ln, err := net.Listen("tcp", address)
	if err != nil {
		return fmt.Errorf("%s address %s: %w", name, address, err)
	}
	bound := ln.Addr().String()
	p.setAddr(name, bound)
	e := &httpEndpoint{srv: &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}}
	if !p.gate.start(func() {
		if err := e.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.log.Error(name+" server failed", "err", err)
		}
	}) {
		ln.Close()
		return ErrClosed
	}
	p.endpoints = append(p.endpoints, e)
	switch {
	case name == adminName:
		p.log.Info("admin endpoint", "addr", bound, "token", p.cfg.AdminToken != "")
	case name == pprofName && !addr.Loopback(bound):
		p.log.Warn("pprof endpoint on a non-loopback address: anyone who reaches it can profile the proxy", "addr", bound)
	case name == pprofName:
		p.log.Info("pprof endpoint", "addr", bound)
	}
	return nil
}

// closeHTTP stops the endpoints (the gate then waits for them).
func (p *Proxy) closeHTTP() error {
	var errs []error
	for _, e := range p.endpoints {
		errs = append(errs, e.Close())
	}
	return errors.Join(errs...)
}

// metricsHandler serves /metrics (the sockets' counters, Go's and the
// process's), /healthz and /readyz. No profiles here: they have their own
// address (pprofHandler).
func (p *Proxy) metricsHandler() http.Handler {
	reg := prometheus.NewRegistry()
	var sockets []metrics.Socket
	for _, name := range []string{FrontendName, BackendName, PublisherName, SubscriberName} {
		if st := p.stats[name]; st != nil {
			sockets = append(sockets, metrics.Socket{Name: name, Stats: st})
		}
	}
	reg.MustRegister(metrics.NewCollector(sockets...))
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if p.failed.Load() {
			http.Error(w, "a socket actor failed for good", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if err := p.ready(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}

// ready says why the proxy is not ready to serve, or nil: every socket
// actor running with its socket bound (none failed or waiting out a
// restart backoff), the record registered when a registry is used, and,
// for a local proxy, at least one central publisher connected.
func (p *Proxy) ready() error {
	if p.failed.Load() {
		return errors.New("a socket actor failed for good")
	}
	for _, name := range []string{FrontendName, BackendName, PublisherName, SubscriberName} {
		if in := p.inboxes[name]; in != nil && in.down.Load() {
			return fmt.Errorf("the %s socket is restarting", name)
		}
	}
	if p.registrar != nil && !p.Registered() {
		return fmt.Errorf("not registered in %s", p.registry)
	}
	if p.cfg.Kind == KindLocalPublisher && p.stats[SubscriberName].Peers.Load() == 0 {
		return errors.New("no central publisher connected")
	}
	return nil
}

// AdminReply is the admin endpoint's answer to POST /pause and /resume.
type AdminReply struct {
	Paused  bool `json:"paused"`
	Changed bool `json:"changed"` // false: it was already so
}

// AdminStats is the admin endpoint's answer to GET /stats.
type AdminStats struct {
	Kind    string                 `json:"kind"`
	Paused  bool                   `json:"paused"`
	Sockets map[string]SocketStats `json:"sockets"`
}

// adminHandler serves the steering endpoint: POST /pause stops reading
// from the frontend, POST /resume reads again, GET /stats returns the
// counters as JSON.
func (p *Proxy) adminHandler() http.Handler {
	kind := p.cfg.Kind
	mux := http.NewServeMux()
	mux.HandleFunc("POST /pause", func(w http.ResponseWriter, _ *http.Request) {
		if kind == KindLocalPublisher {
			http.Error(w, "a local publisher proxy has no frontend to pause", http.StatusConflict)
			return
		}
		writeJSON(w, AdminReply{Paused: true, Changed: p.Pause()})
	})
	mux.HandleFunc("POST /resume", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, AdminReply{Paused: p.Paused(), Changed: p.Resume()})
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, AdminStats{Kind: kind.String(), Paused: p.Paused(), Sockets: p.AllStats()})
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// adminGuard refuses what a web page, or a stranger, could send to the
// admin endpoint:
//   - with a token, a request without "Authorization: Bearer TOKEN" (401);
//   - without one, a request whose Host is not a loopback address or
//     "localhost" (403): a page whose DNS name rebinds to 127.0.0.1;
//   - a request a browser marks as from another site (Sec-Fetch-Site
//     cross-site or same-site, or an Origin whose host is not the Host):
//     403, as Go's http.CrossOriginProtection does, but for GET too;
//   - a POST whose Content-Type is not application/json (415): a page can
//     send a "simple" cross-site POST (text/plain, a form) without a CORS
//     preflight, not a JSON one.
func adminGuard(token string, next http.Handler) http.Handler {
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if token != "" {
			if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="zmq-proxy admin"`)
				http.Error(w, "a token is required: Authorization: Bearer TOKEN (zmq-proxy ctl --admin-token-file)", http.StatusUnauthorized)
				return
			}
		} else if !addr.Loopback(r.Host) {
			http.Error(w, "Host is not a loopback address", http.StatusForbidden)
			return
		}
		switch r.Header.Get("Sec-Fetch-Site") {
		case "cross-site", "same-site":
			http.Error(w, "cross-site request refused", http.StatusForbidden)
			return
		}
		if o := r.Header.Get("Origin"); o != "" {
			if u, err := url.Parse(o); err != nil || u.Host != r.Host {
				http.Error(w, "cross-origin request refused", http.StatusForbidden)
				return
			}
		}
		if r.Method == http.MethodPost {
			if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
				http.Error(w, "POST needs Content-Type: application/json", http.StatusUnsupportedMediaType)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// pprofHandler serves Go's profiles under /debug/pprof/.
func pprofHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
