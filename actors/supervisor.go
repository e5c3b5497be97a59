package actors

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/zmq-proxy/zmq-proxy/internal/logging"
	"github.com/zmq-proxy/zmq-proxy/transport"
)

// supervisorName is the name of the actor that owns the socket actors.
const supervisorName = "proxy"

// Restart policy of the socket actors. ergo's default bound is 5 restarts
// in 5 s; a socket that cannot bind for a minute is better handed to the
// process supervisor (systemd) than retried for ever.
const (
	restartMinBackoff = 100 * time.Millisecond
	restartMaxBackoff = 10 * time.Second
	restartMax        = 10
	restartWindow     = time.Minute
)

// backoffStrategy restarts a failed child alone (one-for-one), after a
// delay that doubles with each failure in the window, capped; past
// maxRestarts in the window it stops the child and calls giveUp.
// protoactor's own "exponential" strategy grows linearly and has no cap
// and no bound on restarts, hence this one.
type backoffStrategy struct {
	minDelay    time.Duration
	maxDelay    time.Duration
	maxRestarts int
	window      time.Duration
	log         *slog.Logger
	// failed, if set, is told of every failure at once, before the
	// backoff: the child's mailbox is suspended from now on.
	failed func(child *actor.PID)
	giveUp func(child *actor.PID, reason any)
	// after runs the restart after the backoff (the proxy's gate, which
	// Close shuts); nil = time.AfterFunc.
	after func(time.Duration, func()) bool
}

var _ actor.SupervisorStrategy = (*backoffStrategy)(nil)

func (s *backoffStrategy) HandleFailure(_ *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason, _ any) {
	if s.failed != nil {
		s.failed(child)
	}
	if rs.NumberOfFailures(s.window) == 0 {
		rs.Reset()
	}
	rs.Fail()
	n := rs.NumberOfFailures(s.window)
	if n > s.maxRestarts {
		s.log.Error("socket actor failed too often, giving up", "actor", child.Id, "failures", n, "window", s.window, "err", reason)
		sup.StopChildren(child)
		if s.giveUp != nil {
			s.giveUp(child, reason)
		}
		return
	}
	delay := backoffDelay(s.minDelay, s.maxDelay, n)
	s.log.Warn("socket actor failed, restarting", "actor", child.Id, "err", reason, "failures", n, "restart_in", delay)
	restart := func() { sup.RestartChildren(child) }
	if s.after == nil {
		time.AfterFunc(delay, restart)
	} else if !s.after(delay, restart) {
		s.log.Info("socket actor not restarted: shutting down", "actor", child.Id)
	}
}

// backoffDelay is min·2^(n-1), capped at max.
func backoffDelay(lo, hi time.Duration, n int) time.Duration {
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}

// supervisorActor spawns the socket actors as its children; the strategy in
// its props restarts them.
type supervisorActor struct {
	children []childSpec
	log      *slog.Logger
}

type childSpec struct {
	name  string
	props *actor.Props
}

func supervisorProps(children []childSpec, strategy actor.SupervisorStrategy, log *slog.Logger) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor {
		return &supervisorActor{children: children, log: log}
	}, actor.WithSupervisor(strategy))
}

func (a *supervisorActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		for _, c := range a.children {
			if _, err := ctx.SpawnNamed(c.props, c.name); err != nil {
				panic(fmt.Errorf("spawn %s: %w", c.name, err))
			}
		}
	case *spawnChild:
		_, err := ctx.SpawnNamed(msg.child.props, msg.child.name)
		if err != nil {
			err = fmt.Errorf("spawn %s: %w", msg.child.name, err)
		}
		msg.done <- err
	case *actor.Stopping, *actor.Stopped, *actor.Restarting, *actor.Terminated:
	default:
		a.log.Warn("unexpected message", "actor", supervisorName, "type", fmt.Sprintf("%T", msg))
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
			return slog.New(logging.MinLevel{Handler: logger.Handler(), Level: slog.LevelWarn}).With("component", "actor")
		}),
		actor.WithDeadLetterThrottleInterval(10*time.Millisecond),
	)
}

// bindTimeout bounds how long New waits for the socket actors to bind.
const bindTimeout = 10 * time.Second

// startSupervisor starts the actor system and the supervisor, whose
// children are the socket actors, with the restart strategy; it returns
// once every socket is bound (or one failed to bind). A socket that binds
// again after a restart updates the proxy's addresses.
func (p *Proxy) startSupervisor() error {
	cfg := p.cfg
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
			if in := p.inboxes[strings.TrimPrefix(child.Id, supervisorName+"/")]; in != nil {
				in.setDown()
			}
		},
		giveUp: func(child *actor.PID, reason any) {
			p.failed.Store(true)
			p.fatal(fmt.Errorf("%s gave up after %d restarts: %v", child.Id, cfg.restart.maxRestarts, reason))
		},
	}
	sup, err := p.system.Root.SpawnNamed(supervisorProps(children, strategy, p.log), supervisorName)
	if err != nil {
		return fmt.Errorf("spawn supervisor: %w", err)
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
				return r.err
			}
			p.setAddr(r.name, r.addr)
		case <-timeout:
			return fmt.Errorf("sockets not bound within %s", bindTimeout)
		}
	}
	return nil
}

// children builds the socket actors' specs: who binds what, and where each
// sends what it reads.
func (p *Proxy) children(report func(bindResult)) []childSpec {
	cfg := p.cfg
	pid := func(name string) *actor.PID { return p.system.NewLocalPID(supervisorName + "/" + name) }
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
