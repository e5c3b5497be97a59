package actors

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/zmq-proxy/zmq-proxy/registry"
	"github.com/zmq-proxy/zmq-proxy/transport"
)

// A proxy is built by concern, one file each: the socket actors and their
// supervisor (supervisor.go), the registry (registry.go), the HTTP
// endpoints (http.go). This file holds the one face a program embedding
// the proxy sees: New, Ready, Err, Addrs, Close (and Pause, Resume, Drain).

// readyPoll is how often a proxy that waits for its registration asks
// whether it is in the registry yet (Ready).
const readyPoll = 100 * time.Millisecond

// Addrs are the addresses a proxy actually bound: its sockets' as
// tcp://host:port, its HTTP endpoints' as host:port. A field is empty when
// the proxy kind has no such socket, or the endpoint is off.
type Addrs struct {
	Frontend  string
	Backend   string
	Publisher string
	Metrics   string // the metrics endpoint (Config.MetricsAddr)
	Admin     string // the admin endpoint (Config.AdminAddr)
	Pprof     string // the pprof endpoint (Config.PprofAddr)
}

// Proxy is a running proxy: an actor system whose supervisor owns one
// actor per socket, its registration, and its HTTP endpoints.
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
	endpoints    []*httpEndpoint // the HTTP endpoints started (http.go)
	gate         gate            // restart timers, the HTTP endpoints and the Ready poll start through it

	registry registry.Registry // nil when disabled
	started  time.Time

	pause *pauseGate // the frontend's, for Pause; nil for a local publisher

	readyc    chan struct{} // closed once registered (Ready)
	done      chan struct{} // closed when Close starts
	errMu     sync.Mutex    // guards sending on and closing errc
	errClosed bool
	errc      chan error
	failed    atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// New validates cfg, starts the proxy and returns it once its sockets are
// bound and its HTTP endpoints listen: it accepts connections and has
// logged "proxy started" with its addresses. Its registration may come
// later (Ready). On error everything already started is released (one
// deferred Close); an invalid cfg's error wraps ErrConfig.
func New(cfg Config) (_ *Proxy, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p := &Proxy{
		cfg:     cfg,
		log:     cfg.Logger,
		readyc:  make(chan struct{}),
		done:    make(chan struct{}),
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
	if err := p.startSupervisor(); err != nil {
		return nil, err
	}
	if err := p.startHTTP(); err != nil {
		return nil, err
	}
	if err := p.startRegistrar(); err != nil {
		return nil, err
	}
	p.watchReady()
	p.logStarted()
	return p, nil
}

// logStarted logs "proxy started" with what the proxy is and where it
// listens.
func (p *Proxy) logStarted() {
	cfg := p.cfg
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
}

// Ready is closed once the proxy is in service: its record is in the
// registry (at once when it registers nowhere: its sockets are bound when
// New returns). It is not closed again after a lost registration; /readyz
// says how the proxy is now.
func (p *Proxy) Ready() <-chan struct{} { return p.readyc }

// watchReady closes readyc once Registered, asking every readyPoll until
// Close.
func (p *Proxy) watchReady() {
	if p.registrar == nil {
		close(p.readyc)
		return
	}
	p.gate.start(func() {
		t := time.NewTicker(readyPoll)
		defer t.Stop()
		for {
			select {
			case <-p.done:
				return
			case <-t.C:
			}
			if p.Registered() {
				close(p.readyc)
				return
			}
		}
	})
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
	field := map[string]*string{
		FrontendName: &p.addrs.Frontend, BackendName: &p.addrs.Backend, PublisherName: &p.addrs.Publisher,
		metricsName: &p.addrs.Metrics, adminName: &p.addrs.Admin, pprofName: &p.addrs.Pprof,
	}[name]
	if field != nil {
		*field = addr
	}
}

// Stats returns a socket's live counters by name (FrontendName, ...), or nil.
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
//  2. stop the HTTP endpoints and wait for them;
//  3. stop the supervisor, which stops each socket actor, which closes its
//     socket and waits for the socket's goroutines (queued messages are
//     dropped, as a libzmq socket with linger 0 does);
//  4. shut the actor system down;
//  5. let go of the registry (closeRegistry: with an embedded etcd, its
//     watchers catch up first, at most a second);
//  6. close Err's channel.
func (p *Proxy) Close() error {
	p.closeOnce.Do(func() {
		p.gate.close()
		close(p.done)
		if p.registrar != nil {
			if err := p.system.Root.StopFuture(p.registrar).Wait(); err != nil {
				p.closeErr = fmt.Errorf("stop registrar: %w", err)
			}
		}
		p.closeErr = errors.Join(p.closeErr, p.closeHTTP())
		p.gate.wait()
		if p.sup != nil {
			if err := p.system.Root.StopFuture(p.sup).Wait(); err != nil {
				p.closeErr = errors.Join(p.closeErr, fmt.Errorf("stop supervisor: %w", err))
			}
		}
		if p.system != nil {
			p.system.Shutdown()
		}
		p.closeErr = errors.Join(p.closeErr, p.closeRegistry())
		p.errMu.Lock()
		p.errClosed = true
		close(p.errc)
		p.errMu.Unlock()
	})
	return p.closeErr
}
