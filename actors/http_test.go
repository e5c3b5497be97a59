package actors

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
)

// adminGuard: what a web page or a stranger could send is refused, with
// its own status; ctl's requests pass.
func TestAdminGuard(t *testing.T) {
	const token = "0123456789abcdef0123"
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	json := map[string]string{"Content-Type": "application/json"}
	for _, tt := range []struct {
		name    string
		token   string
		method  string
		host    string
		headers map[string]string
		want    int
	}{
		{"ctl's POST, no token", "", "POST", "127.0.0.1:9470", json, 200},
		{"GET /stats, no token", "", "GET", "127.0.0.1:9470", nil, 200},
		{"simple POST text/plain", "", "POST", "127.0.0.1:9470", map[string]string{"Content-Type": "text/plain"}, 415},
		{"form POST", "", "POST", "127.0.0.1:9470", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 415},
		{"POST without Content-Type", "", "POST", "127.0.0.1:9470", nil, 415},
		{"cross-site fetch", "", "POST", "127.0.0.1:9470", map[string]string{"Content-Type": "application/json", "Sec-Fetch-Site": "cross-site"}, 403},
		{"same-site fetch", "", "GET", "127.0.0.1:9470", map[string]string{"Sec-Fetch-Site": "same-site"}, 403},
		{"same-origin fetch", "", "GET", "127.0.0.1:9470", map[string]string{"Sec-Fetch-Site": "same-origin"}, 200},
		{"other Origin", "", "GET", "127.0.0.1:9470", map[string]string{"Origin": "http://evil.example"}, 403},
		{"DNS rebinding: Host is a name", "", "GET", "evil.example:9470", nil, 403},
		{"with token, none sent", token, "POST", "10.0.0.1:9470", json, 401},
		{"with token, wrong one", token, "POST", "10.0.0.1:9470", map[string]string{"Content-Type": "application/json", "Authorization": "Bearer 0123456789abcdef0124"}, 401},
		{"with token, right one", token, "POST", "10.0.0.1:9470", map[string]string{"Content-Type": "application/json", "Authorization": "Bearer " + token}, 200},
		{"with token, right one, text/plain", token, "POST", "10.0.0.1:9470", map[string]string{"Content-Type": "text/plain", "Authorization": "Bearer " + token}, 415},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, "http://"+tt.host+"/pause", nil)
			for k, v := range tt.headers {
				r.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			adminGuard(tt.token, ok).ServeHTTP(w, r)
			if w.Code != tt.want {
				t.Fatalf("got %d (%s), want %d", w.Code, strings.TrimSpace(w.Body.String()), tt.want)
			}
		})
	}
}

// One Config starts the three HTTP endpoints, each on its own address,
// which Addrs reports; Close stops them. A proxy without a registry is
// Ready when New returns.
func TestHTTPEndpoints(t *testing.T) {
	p := startProxy(t, Config{Kind: KindDoubleRouter, MetricsAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", PprofAddr: "127.0.0.1:0"})
	select {
	case <-p.Ready():
	default:
		t.Error("Ready not closed for a proxy without a registry")
	}
	a := p.Addrs()
	if a.Metrics == "" || a.Admin == "" || a.Pprof == "" || a.Metrics == a.Admin || a.Admin == a.Pprof || a.Metrics == a.Pprof {
		t.Fatalf("Addrs %+v: want three different HTTP addresses", a)
	}
	get := func(url string) int {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tt := range []struct {
		url  string
		want int
	}{
		{"http://" + a.Metrics + "/metrics", 200},
		{"http://" + a.Metrics + "/debug/pprof/", 404},
		{"http://" + a.Pprof + "/debug/pprof/", 200},
		{"http://" + a.Admin + "/stats", 200},
		{"http://" + a.Admin + "/metrics", 404},
	} {
		if got := get(tt.url); got != tt.want {
			t.Errorf("GET %s: %d, want %d", tt.url, got, tt.want)
		}
	}
	resp, err := http.Post("http://"+a.Admin+"/pause", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	var r AdminReply
	err = json.NewDecoder(resp.Body).Decode(&r)
	resp.Body.Close()
	if err != nil || r != (AdminReply{Paused: true, Changed: true}) || !p.Paused() {
		t.Errorf("POST /pause: %+v %v, Paused() %v; want paused and changed", r, err, p.Paused())
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{a.Metrics, a.Admin, a.Pprof} {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			t.Errorf("%s still accepts after Close", addr)
		}
	}
}

// An admin address that is taken fails New with the address, not as a
// configuration error; an admin address others can reach needs a token.
func TestHTTPEndpointErrors(t *testing.T) {
	ln := testutil.Taken(t)
	cfg := Config{Kind: KindDoubleRouter, Host: "127.0.0.1", AdminAddr: ln.Addr().String(), Logger: testutil.Quiet(), Registry: RegistryConfig{Disabled: true}}
	if p, err := New(cfg); err == nil || errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "admin address "+ln.Addr().String()) {
		if p != nil {
			p.Close()
		}
		t.Errorf("New on a taken admin address: %v, want an error naming it, not ErrConfig", err)
	}
	cfg.AdminAddr = "0.0.0.0:0"
	if _, err := New(cfg); !errors.Is(err, ErrConfig) {
		t.Errorf("New with a non-loopback admin address and no token: %v, want ErrConfig", err)
	}
}
