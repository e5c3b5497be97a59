package main

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/zmq-proxy/zmq-proxy/actors"
)

// startAdmin serves the steering endpoint, libzmq's zmq_proxy_steerable over
// HTTP: POST /pause stops reading from the frontend, POST /resume reads
// again, GET /stats returns the counters as JSON. It listens apart from
// /metrics, on loopback unless told otherwise, since it changes what the
// proxy does; on any other address only with a token (adminGuard).
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

// startAdmin listens on addr and serves p's steering endpoint; token, when
// not empty, is required of every request.
func startAdmin(addr, token string, p *actors.Proxy, kind actors.Kind, logger *slog.Logger) (*httpEndpoint, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin address %s: %w", addr, err)
	}
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
	a := serveHTTP(ln, adminGuard(token, mux), "admin", logger)
	logger.Info("admin endpoint", "addr", ln.Addr().String(), "token", token != "")
	return a, nil
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
		} else if !loopbackHost(r.Host) {
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

// loopbackHost reports whether hostport (a Host header, or an address)
// names a loopback address: 127.0.0.0/8, ::1 or "localhost".
func loopbackHost(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = strings.Trim(hostport, "[]")
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// maxTokenFile bounds what an admin token file may hold.
const maxTokenFile = 4 << 10

// minToken is the shortest token accepted: 16 bytes, 128 bits if random
// (openssl rand -hex 16 makes 32 characters).
const minToken = 16

// readTokenFile reads an admin token: the file's text without surrounding
// white space, one line of at least minToken printable characters. No
// error quotes the file's contents.
func readTokenFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return "", err
	}
	if len(b) > maxTokenFile {
		return "", fmt.Errorf("larger than %d bytes, not a token file", maxTokenFile)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < minToken {
		return "", fmt.Errorf("the token is %d characters long, at least %d wanted (openssl rand -hex 16 makes one)", len(tok), minToken)
	}
	for i := 0; i < len(tok); i++ {
		if tok[i] <= ' ' || tok[i] > '~' {
			return "", fmt.Errorf("the token has a space or a non-printable character at position %d: one line of printable ASCII wanted", i+1)
		}
	}
	return tok, nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
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
