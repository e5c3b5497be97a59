package actors

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/zmq-proxy/zmq-proxy/internal/etcdserver"
	"github.com/zmq-proxy/zmq-proxy/internal/metrics"
	"github.com/zmq-proxy/zmq-proxy/registry"
	"github.com/zmq-proxy/zmq-proxy/transport"
)

// bindTimeout bounds how long New waits for the socket actors to bind.
const bindTimeout = 10 * time.Second

// Addrs are the addresses a proxy actually bound, as tcp://host:port.
// A field is empty when the proxy kind has no such socket.
type Addrs struct {
	Frontend  string
	Backend   string
	Publisher string
	Metrics   string // host:port of the HTTP server, "" when off
}

// Proxy is a running central proxy: an actor system whose supervisor owns
// one actor per socket, and an optional HTTP server for metrics.
type Proxy struct {
	cfg    Config
	log    *slog.Logger
	system *actor.ActorSystem
	sup    *actor.PID
	addrs  Addrs
	stats  map[string]*transport.Stats
	http   *http.Server
	httpWG sync.WaitGroup

	etcd    *etcdserver.Server // the embedded etcd, if this process started it
	etcdCli *clientv3.Client
	started time.Time

	errc      chan error
	failed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// New validates cfg, binds every socket and starts the proxy. On error
// everything already bound is released. When New returns, the proxy
// accepts connections and has logged "proxy started" with its addresses.
func New(cfg Config) (*Proxy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Proxy{
		cfg:     cfg,
		log:     cfg.Logger,
		errc:    make(chan error, 1),
		stats:   make(map[string]*transport.Stats),
		started: time.Now(),
	}
	if err := p.openRegistry(); err != nil {
		p.Close()
		return nil, err
	}

	p.system = newActorSystem(cfg.Logger)

	binds := make(chan bindResult, 8)
	var seen sync.Map
	report := func(r bindResult) {
		if _, again := seen.LoadOrStore(r.name, true); !again {
			binds <- r
		} else if r.err == nil {
			p.log.Info("socket rebound", "socket", r.name, "addr", r.addr)
		}
	}
	children := p.children(report)
	strategy := &backoffStrategy{
		minDelay: restartMinBackoff, maxDelay: restartMaxBackoff,
		maxRestarts: restartMax, window: restartWindow,
		log: p.log,
		giveUp: func(child *actor.PID, reason any) {
			p.failed.Store(true)
			select {
			case p.errc <- fmt.Errorf("%s gave up after %d restarts: %v", child.Id, restartMax, reason):
			default:
			}
		},
	}
	sup, err := p.system.Root.SpawnNamed(supervisorProps(children, strategy, p.log), SupervisorName)
	if err != nil {
		p.system.Shutdown()
		return nil, fmt.Errorf("spawn supervisor: %w", err)
	}
	p.sup = sup

	timeout := time.After(bindTimeout)
	binding := len(children)
	if cfg.Kind == KindLocalPublisher {
		binding = 1 // the SUB connects, only the PUB binds
	}
	for range binding {
		select {
		case r := <-binds:
			if r.err != nil {
				p.Close()
				return nil, r.err
			}
			switch r.name {
			case FrontendName:
				p.addrs.Frontend = r.addr
			case BackendName:
				p.addrs.Backend = r.addr
			case PublisherName:
				p.addrs.Publisher = r.addr
			}
		case <-timeout:
			p.Close()
			return nil, fmt.Errorf("sockets not bound within %s", bindTimeout)
		}
	}
	if cfg.MetricsAddr != "" {
		if err := p.serveHTTP(cfg.MetricsAddr); err != nil {
			p.Close()
			return nil, err
		}
	}
	if p.etcdCli != nil {
		p.system.Root.Send(p.sup, &spawnChild{childSpec{RegistrarName, registrarProps(p.registrarSpec())}})
	}
	attrs := []any{"kind", cfg.Kind.String()}
	if p.addrs.Frontend != "" {
		attrs = append(attrs, "frontend", p.addrs.Frontend)
	}
	if p.addrs.Backend != "" {
		attrs = append(attrs, "backend", p.addrs.Backend)
	}
	attrs = append(attrs, "publisher", p.addrs.Publisher)
	if cfg.Kind == KindLocalPublisher {
		if len(cfg.SubscribeOn) > 0 {
			attrs = append(attrs, "subscribe_on", strings.Join(cfg.SubscribeOn, ","))
		} else {
			attrs = append(attrs, "subscribe_on", "registry")
		}
	}
	if p.addrs.Metrics != "" {
		attrs = append(attrs, "metrics", p.addrs.Metrics)
	}
	if cfg.Security != nil {
		attrs = append(attrs, "security", cfg.Security.Name())
	}
	p.log.Info("proxy started", attrs...)
	return p, nil
}

// children builds the socket actors' specs: who binds what, and where each
// sends what it reads.
func (p *Proxy) children(report func(bindResult)) []childSpec {
	cfg := p.cfg
	pid := func(name string) *actor.PID { return p.system.NewLocalPID(SupervisorName + "/" + name) }
	host := cfg.Host
	if host == "" {
		host = "*"
	}
	endpoint := func(port int) string { return "tcp://" + net.JoinHostPort(host, strconv.Itoa(port)) }
	spec := func(name string, port int, identity []byte) *socketSpec {
		st := new(transport.Stats)
		p.stats[name] = st
		return &socketSpec{
			name:     name,
			endpoint: endpoint(port),
			opts: transport.Options{
				HWM:            cfg.HWM,
				MaxMessageSize: cfg.MaxMessageSize,
				Identity:       identity,
				Security:       cfg.Security,
				Stats:          st,
				Logger:         p.log.With("socket", name),
			},
			log:   p.log,
			debug: cfg.Debug,
			pub:   pid(PublisherName),
			bound: report,
		}
	}
	if cfg.Kind == KindLocalPublisher {
		pub := spec(PublisherName, cfg.PublisherPort, nil)
		st := new(transport.Stats)
		p.stats[SubscriberName] = st
		sub := &subscriberSpec{
			opts: transport.Options{
				HWM: cfg.HWM, MaxMessageSize: cfg.MaxMessageSize, Stats: st,
				Logger:   p.log.With("socket", SubscriberName),
				Security: cfg.SubscriberSecurity,
			},
			log:    p.log,
			pub:    pid(PublisherName),
			debug:  cfg.Debug,
			static: cfg.SubscribeOn,
			cli:    p.etcdCli,
			prefix: cfg.Registry.Prefix,
		}
		return []childSpec{{PublisherName, publisherProps(pub)}, {SubscriberName, subscriberProps(sub)}}
	}
	fe := spec(FrontendName, cfg.FrontendPort, []byte(proxyIdentity(cfg.Host)))
	fe.ack = cfg.AckPubSub
	pub := spec(PublisherName, cfg.PublisherPort, nil)
	children := []childSpec{{PublisherName, publisherProps(pub)}}
	if cfg.Kind == KindSingleRouter {
		fe.direct = pid(FrontendName)
	} else {
		be := spec(BackendName, cfg.BackendPort, nil)
		fe.direct = pid(BackendName)
		be.direct = pid(FrontendName)
		children = append(children, childSpec{BackendName, routerProps(be)})
	}
	return append(children, childSpec{FrontendName, routerProps(fe)})
}

// proxyIdentity is the frontend's socket identity, "host/random", the form
// of the driver's own identities; ACKs carry it.
func proxyIdentity(host string) string {
	if host == "" || host == "*" {
		host, _ = os.Hostname()
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return host + "/" + hex.EncodeToString(b[:])
}

func (p *Proxy) serveHTTP(addr string) error {
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
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if p.failed.Load() {
			http.Error(w, "a socket actor failed for good", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	// Profiles, for an operator chasing CPU (they cost nothing until asked).
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics address %s: %w", addr, err)
	}
	p.addrs.Metrics = ln.Addr().String()
	p.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	p.httpWG.Add(1)
	go func() {
		defer p.httpWG.Done()
		if err := p.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.log.Error("metrics server failed", "err", err)
		}
	}()
	return nil
}

// Addrs returns the bound addresses.
func (p *Proxy) Addrs() Addrs { return p.addrs }

// Stats returns a socket's counters by name (FrontendName, ...), or nil.
func (p *Proxy) Stats(name string) *transport.Stats { return p.stats[name] }

// Err reports a fatal error: a socket actor that failed more often than
// the restart policy allows.
func (p *Proxy) Err() <-chan error { return p.errc }

// Close shuts the proxy down and is safe to call more than once:
//  1. stop the metrics HTTP server;
//  2. stop the supervisor, which stops each socket actor, which closes its
//     socket and waits for the socket's goroutines (queued messages are
//     dropped, as a libzmq socket with linger 0 does);
//  3. shut the actor system down;
//  4. close the etcd client, then the embedded etcd if this process
//     started one.
//
// The registrar is the supervisor's last child, so it stops first: the
// lease is revoked (the record is gone) before the sockets close.
func (p *Proxy) Close() error {
	p.closeOnce.Do(func() {
		if p.http != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			p.closeErr = p.http.Shutdown(ctx)
			cancel()
			p.httpWG.Wait()
		}
		if p.sup != nil {
			if err := p.system.Root.StopFuture(p.sup).Wait(); err != nil {
				p.closeErr = errors.Join(p.closeErr, fmt.Errorf("stop supervisor: %w", err))
			}
		}
		if p.system != nil {
			p.system.Shutdown()
		}
		if p.etcdCli != nil {
			p.etcdCli.Close()
		}
		if p.etcd != nil {
			if err := p.etcd.Close(); err != nil {
				p.closeErr = errors.Join(p.closeErr, fmt.Errorf("stop embedded etcd: %w", err))
			}
		}
	})
	return p.closeErr
}

// minLevel filters a handler to records at or above a level (protoactor
// logs its own lifecycle at info; we want only its warnings).
type minLevel struct {
	slog.Handler
	level slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.level && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(a []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(a), h.level}
}

func (h minLevel) WithGroup(n string) slog.Handler { return minLevel{h.Handler.WithGroup(n), h.level} }

// openRegistry connects to etcd: the cluster named in the configuration,
// or the etcd answering on the local address, or an embedded one started
// there.
func (p *Proxy) openRegistry() error {
	rc := p.cfg.Registry
	if rc.Disabled {
		p.log.Info("registry disabled")
		return nil
	}
	endpoints := rc.Endpoints
	if len(endpoints) == 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		eps, srv, err := etcdserver.Local(ctx, etcdserver.Options{
			ClientAddr: rc.EmbeddedAddr,
			DataDir:    filepath.Join(rc.StateDir, "etcd"),
			Logger:     p.log,
		})
		if err != nil {
			return err
		}
		endpoints, p.etcd = eps, srv
	}
	cli, err := registry.NewClient(registry.ClientConfig{
		Endpoints: endpoints,
		Username:  rc.Username, Password: rc.Password,
		CACert: rc.CACert, Cert: rc.Cert, Key: rc.Key,
	})
	if err != nil {
		return fmt.Errorf("etcd client: %w", err)
	}
	p.etcdCli = cli
	return nil
}

// registrarSpec builds this proxy's record from the bound addresses.
func (p *Proxy) registrarSpec() *registrarSpec {
	rc := p.cfg.Registry
	name := rc.Name
	if name == "" {
		name, _ = os.Hostname()
	}
	rec := registry.Record{
		ID:         proxyIdentity(name),
		Kind:       p.cfg.Kind.String(),
		Host:       name,
		Frontend:   advertise(p.addrs.Frontend, name),
		Backend:    advertise(p.addrs.Backend, name),
		Publisher:  advertise(p.addrs.Publisher, name),
		Started:    p.started.UTC(),
		Generation: p.started.UnixNano(),
	}
	return &registrarSpec{
		cfg: registry.Config{Client: p.etcdCli, Prefix: rc.Prefix, TTL: rc.TTL, Logger: p.log},
		rec: rec,
		log: p.log,
	}
}

// advertise turns a bound address into one peers can dial: a socket bound
// to every interface is advertised under the host name.
func advertise(bound, name string) string {
	if bound == "" {
		return ""
	}
	hostport := strings.TrimPrefix(bound, "tcp://")
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return bound
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = name
	}
	return "tcp://" + net.JoinHostPort(host, port)
}

// Registered reports whether the proxy's record is in etcd now (false
// when the registry is disabled).
func (p *Proxy) Registered() bool {
	if p.etcdCli == nil {
		return false
	}
	reply := make(chan bool, 1)
	p.system.Root.Send(p.system.NewLocalPID(SupervisorName+"/"+RegistrarName), &registeredQuery{reply})
	select {
	case ok := <-reply:
		return ok
	case <-time.After(time.Second):
		return false
	}
}

// newActorSystem makes an actor system that logs through logger, warnings
// and above only (protoactor logs its own lifecycle at info). Its
// dead-letter throttle runs a goroutine per throttling period, not owned
// by anyone; a short period lets it end soon after a Close (the dead-letter
// log is below warning anyway).
func newActorSystem(logger *slog.Logger) *actor.ActorSystem {
	return actor.NewActorSystem(
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger {
			return slog.New(minLevel{logger.Handler(), slog.LevelWarn}).With("component", "actor")
		}),
		actor.WithDeadLetterThrottleInterval(10*time.Millisecond),
	)
}
