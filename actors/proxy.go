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
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/zmq-proxy/zmq-proxy/internal/metrics"
	"github.com/zmq-proxy/zmq-proxy/registry"
	"github.com/zmq-proxy/zmq-proxy/transport"
)

// metricsName names the HTTP server's address in setAddr.
const metricsName = "metrics"

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
	// registrar is the registrar actor, once spawned; Close stops it first.
	registrar *actor.PID
	addrMu    sync.Mutex
	addrs     Addrs // guarded by addrMu: a restart rebinds
	stats     map[string]*transport.Stats
	// inboxes are the socket actors' ways in, by name: the strategy marks
	// one down when its actor fails.
	inboxes map[string]*inbox
	// notAccepting is set by a drain: a socket actor that restarts after
	// it binds without accepting (socketSpec.bind).
	notAccepting atomic.Bool
	http         *http.Server
	gate         gate // restart timers and the HTTP server start through it

	registry registry.Registry // nil when disabled
	started  time.Time

	pause *pauseGate // the frontend's, for Pause; nil for a local publisher

	errMu     sync.Mutex // guards sending on and closing errc
	errClosed bool
	errc      chan error
	failed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// New validates cfg, binds every socket and starts the proxy. On error
// everything already started is released (one deferred Close). When New
// returns, the proxy accepts connections and has logged "proxy started"
// with its addresses.
func New(cfg Config) (_ *Proxy, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Proxy{
		cfg:     cfg,
		log:     cfg.Logger,
		errc:    make(chan error, 1),
		stats:   make(map[string]*transport.Stats),
		inboxes: make(map[string]*inbox),
		started: time.Now(),
	}
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	if err := p.openRegistry(); err != nil {
		return nil, err
	}

	p.system = newActorSystem(cfg.Logger)

	binds := make(chan bindResult, 8)
	var seen sync.Map
	report := func(r bindResult) {
		if _, again := seen.LoadOrStore(r.name, true); !again {
			binds <- r
		} else if r.err == nil {
			p.setAddr(r.name, r.addr)
			p.log.Info("socket rebound", "socket", r.name, "addr", r.addr)
		}
	}
	children := p.children(report)
	strategy := &backoffStrategy{
		minDelay: cfg.restart.minDelay, maxDelay: cfg.restart.maxDelay,
		maxRestarts: cfg.restart.maxRestarts, window: cfg.restart.window,
		log:   p.log,
		after: p.gate.afterFunc,
		failed: func(child *actor.PID) {
			if in := p.inboxes[strings.TrimPrefix(child.Id, SupervisorName+"/")]; in != nil {
				in.setDown()
			}
		},
		giveUp: func(child *actor.PID, reason any) {
			p.failed.Store(true)
			p.fatal(fmt.Errorf("%s gave up after %d restarts: %v", child.Id, cfg.restart.maxRestarts, reason))
		},
	}
	sup, err := p.system.Root.SpawnNamed(supervisorProps(children, strategy, p.log), SupervisorName)
	if err != nil {
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
				return nil, r.err
			}
			p.setAddr(r.name, r.addr)
		case <-timeout:
			return nil, fmt.Errorf("sockets not bound within %s", bindTimeout)
		}
	}
	if cfg.MetricsAddr != "" {
		if err := p.serveHTTP(cfg.MetricsAddr); err != nil {
			return nil, err
		}
	}
	if p.registry != nil {
		if err := p.startRegistrar(); err != nil {
			return nil, err
		}
	}
	attrs := []any{"kind", cfg.Kind.String()}
	addrs := p.Addrs()
	if addrs.Frontend != "" {
		attrs = append(attrs, "frontend", addrs.Frontend)
	}
	if addrs.Backend != "" {
		attrs = append(attrs, "backend", addrs.Backend)
	}
	if addrs.Publisher != "" {
		attrs = append(attrs, "publisher", addrs.Publisher)
	}
	if cfg.Kind != KindLocalPublisher {
		attrs = append(attrs, "use_pub_sub", cfg.PubSub.String())
	}
	if cfg.Kind == KindLocalPublisher {
		if len(cfg.SubscribeOn) > 0 {
			attrs = append(attrs, "subscribe_on", strings.Join(cfg.SubscribeOn, ","))
		} else {
			attrs = append(attrs, "subscribe_on", "registry")
		}
	}
	if addrs.Metrics != "" {
		attrs = append(attrs, "metrics", addrs.Metrics)
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
	conns := transport.NewConnLimit(cfg.MaxConnections)
	handshakes := transport.NewHandshakeLimit(cfg.MaxHandshakes, cfg.MaxHandshakesPerSource)
	stats := func(name string) *transport.Stats {
		if p.stats[name] == nil {
			p.stats[name] = new(transport.Stats)
		}
		return p.stats[name]
	}
	box := func(name string) *inbox {
		if p.inboxes[name] == nil {
			p.inboxes[name] = newInbox(pid(name), stats(name))
		}
		return p.inboxes[name]
	}
	// A router-only proxy has no publisher: nothing is published there
	// (routesFanout routes every fanout type), and it has no stats.
	var pubBox *inbox
	if cfg.Kind == KindLocalPublisher || cfg.PubSub != PubSubOff {
		pubBox = box(PublisherName)
	}
	spec := func(name string, port int, identity []byte) *socketSpec {
		st := stats(name)
		return &socketSpec{
			name:     name,
			endpoint: endpoint(port),
			opts: transport.Options{
				HWM:            cfg.HWM,
				HWMBytes:       int(cfg.HWMBytes),
				Conns:          conns,
				Handshakes:     handshakes,
				MaxMessageSize: cfg.MaxMessageSize,
				MaxFrames:      cfg.MaxFrames,
				Identity:       identity,
				Security:       cfg.Security,
				Stats:          st,
				Logger:         p.log.With("socket", name),
			},
			log:          p.log,
			debug:        cfg.Debug,
			in:           box(name),
			pub:          pubBox,
			bound:        report,
			notAccepting: &p.notAccepting,
		}
	}
	if cfg.Kind == KindLocalPublisher {
		pub := spec(PublisherName, cfg.PublisherPort, nil)
		st := stats(SubscriberName)
		sub := &subscriberSpec{
			opts: transport.Options{
				HWM: cfg.HWM, HWMBytes: int(cfg.HWMBytes), MaxMessageSize: cfg.MaxMessageSize, MaxFrames: cfg.MaxFrames, Stats: st,
				Logger:   p.log.With("socket", SubscriberName),
				Security: cfg.SubscriberSecurity,
			},
			log:    p.log,
			pub:    box(PublisherName),
			in:     box(SubscriberName),
			debug:  cfg.Debug,
			static: cfg.SubscribeOn,
			reg:    p.registry,
		}
		return []childSpec{{PublisherName, publisherProps(pub)}, {SubscriberName, subscriberProps(sub)}}
	}
	fe := spec(FrontendName, cfg.FrontendPort, []byte(proxyIdentity(cfg.Host)))
	fe.ack = cfg.AckPubSub
	fe.pubSub = cfg.PubSub
	p.pause = newPauseGate()
	fe.gate = p.pause
	var children []childSpec
	if cfg.PubSub != PubSubOff { // router-only mode binds no PUB
		pub := spec(PublisherName, cfg.PublisherPort, nil)
		children = append(children, childSpec{PublisherName, publisherProps(pub)})
	}
	if cfg.Kind == KindSingleRouter {
		fe.direct, fe.directSock = box(FrontendName), &fe.sock
	} else {
		be := spec(BackendName, cfg.BackendPort, nil)
		be.pubSub = cfg.PubSub
		fe.direct, fe.directSock = box(BackendName), &be.sock
		be.direct, be.directSock = box(FrontendName), &fe.sock
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
	// No profiles here: they have their own address (zmq-proxy's
	// --pprof-addr), off by default.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics address %s: %w", addr, err)
	}
	p.setAddr(metricsName, ln.Addr().String())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	if !p.gate.start(func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.log.Error("metrics server failed", "err", err)
		}
	}) {
		ln.Close()
		return ErrClosed
	}
	p.http = srv
	return nil
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

// Addrs returns the addresses bound now (a restarted socket rebinds its
// first address).
func (p *Proxy) Addrs() Addrs {
	p.addrMu.Lock()
	defer p.addrMu.Unlock()
	return p.addrs
}

func (p *Proxy) setAddr(name, addr string) {
	p.addrMu.Lock()
	defer p.addrMu.Unlock()
	switch name {
	case FrontendName:
		p.addrs.Frontend = addr
	case BackendName:
		p.addrs.Backend = addr
	case PublisherName:
		p.addrs.Publisher = addr
	case metricsName:
		p.addrs.Metrics = addr
	}
}

// Stats returns a socket's counters by name (FrontendName, ...), or nil.
func (p *Proxy) Stats(name string) *transport.Stats { return p.stats[name] }

// Err reports a fatal error: a socket actor that failed more often than
// the restart policy allows. Its channel is closed when Close has
// finished.
func (p *Proxy) Err() <-chan error { return p.errc }

// fatal reports err on Err, unless one is pending or Close has finished.
func (p *Proxy) fatal(err error) {
	p.errMu.Lock()
	defer p.errMu.Unlock()
	if p.errClosed {
		return
	}
	select {
	case p.errc <- err:
	default:
	}
}

// Close shuts the proxy down and is safe to call more than once:
//  0. shut the gate: no restart timer fires from now on, and nothing new
//     starts;
//  1. stop the registrar and wait for it: its lease is revoked, so the
//     record is deleted and etcd has answered (or, if etcd does not
//     answer within a second, the record expires with its TTL) before any
//     socket closes;
//  2. stop the metrics HTTP server and wait for it;
//  3. stop the supervisor, which stops each socket actor, which closes its
//     socket and waits for the socket's goroutines (queued messages are
//     dropped, as a libzmq socket with linger 0 does);
//  4. shut the actor system down;
//  5. close the registry: with an embedded etcd, its watchers catch up
//     first (they must see the record go before the etcd that held it
//     goes; at most a second), then the etcd client closes, then the
//     embedded etcd if this process started one;
//  6. close Err's channel.
func (p *Proxy) Close() error {
	p.closeOnce.Do(func() {
		p.gate.close()
		if p.registrar != nil {
			if err := p.system.Root.StopFuture(p.registrar).Wait(); err != nil {
				p.closeErr = fmt.Errorf("stop registrar: %w", err)
			}
		}
		if p.http != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			p.closeErr = errors.Join(p.closeErr, p.http.Shutdown(ctx))
			cancel()
		}
		p.gate.wait()
		if p.sup != nil {
			if err := p.system.Root.StopFuture(p.sup).Wait(); err != nil {
				p.closeErr = errors.Join(p.closeErr, fmt.Errorf("stop supervisor: %w", err))
			}
		}
		if p.system != nil {
			p.system.Shutdown()
		}
		if p.registry != nil {
			p.closeErr = errors.Join(p.closeErr, p.registry.Close())
		}
		p.errMu.Lock()
		p.errClosed = true
		close(p.errc)
		p.errMu.Unlock()
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

// Registered reports whether the proxy's record is in the registry now
// (false when the registry is disabled or keeps no record of this proxy).
func (p *Proxy) Registered() bool {
	if p.registrar == nil {
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
