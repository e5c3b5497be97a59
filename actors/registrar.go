package actors

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/zmq-proxy/zmq-proxy/registry"
	redismm "github.com/zmq-proxy/zmq-proxy/registry/redis"
)

// RegistrarName is the name of the actor that holds the registration.
const RegistrarName = "registrar"

// RedisConfig says where oslo.messaging's Redis matchmaker is
// (docs/protocol.md, "The Redis matchmaker").
type RedisConfig struct {
	Addr     string // host:port; "" = not Redis
	Password string
	DB       int
	// Update is how often the records are written again (oslo's
	// zmq_target_update); default RegistryConfig.TTL/3.
	Update time.Duration
	// Poll is how often a local proxy reads PUBLISHERS; default
	// registry.DefaultPoll.
	Poll time.Duration
}

// openRegistry opens the registry the configuration names (registry.Open:
// the Redis matchmaker, an etcd cluster, or the etcd answering on the
// local address, or an embedded one started there). Neither waits for
// the registry: the proxy binds and serves while it is down, and
// registers when it answers.
func (p *Proxy) openRegistry() error {
	rc := p.cfg.Registry
	if rc.Disabled {
		p.log.Info("registry disabled")
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reg, err := registry.Open(ctx, registry.OpenConfig{
		Etcd: registry.ClientConfig{
			Endpoints: rc.Endpoints,
			Username:  rc.Username, Password: rc.Password,
			CACert: rc.CACert, Cert: rc.Cert, Key: rc.Key,
			Background: true,
		},
		EmbeddedAddr:    rc.EmbeddedAddr,
		EmbeddedDataDir: filepath.Join(rc.StateDir, "etcd"),
		Redis:           redismm.Config{Addr: rc.Redis.Addr, Password: rc.Redis.Password, DB: rc.Redis.DB, Logger: p.log},
		Options:         registry.Options{Prefix: rc.Prefix, Poll: rc.Redis.Poll, Update: rc.Redis.Update, Logger: p.log},
	})
	if err != nil {
		return err
	}
	p.registry = reg
	return nil
}

// startRegistrar registers the proxy's record, built from the bound
// addresses, and spawns the registrar actor that holds the registration.
// A registry with no record for this kind of proxy (the Redis matchmaker
// and a local publisher proxy) is told of nothing.
func (p *Proxy) startRegistrar() error {
	spec := p.registrarSpec()
	first, err := p.registry.RegisterProxy(spec.rec, spec.opts)
	if errors.Is(err, registry.ErrUnsupported) {
		p.log.Info("registry: the proxy is not registered", "registry", p.registry.String(), "reason", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("registrar: %w", err)
	}
	spec.first = first
	// Spawned before New returns, so that Close always finds it.
	done := make(chan error, 1)
	p.system.Root.Send(p.sup, &spawnChild{childSpec{RegistrarName, registrarProps(spec)}, done})
	if err := <-done; err != nil {
		first.Close()
		return err
	}
	p.registrar = p.system.NewLocalPID(SupervisorName + "/" + RegistrarName)
	return nil
}

// registrarSpec builds this proxy's record from the bound addresses.
func (p *Proxy) registrarSpec() *registrarSpec {
	rc := p.cfg.Registry
	addrs := p.Addrs()
	name := rc.Name
	if name == "" {
		name, _ = os.Hostname()
	}
	rec := registry.Record{
		ID:         proxyIdentity(name),
		Kind:       p.cfg.Kind.String(),
		Host:       name,
		Frontend:   advertise(addrs.Frontend, name),
		Backend:    advertise(addrs.Backend, name),
		Publisher:  advertise(addrs.Publisher, name),
		Started:    p.started.UTC(),
		Generation: p.started.UnixNano(),
	}
	return &registrarSpec{reg: p.registry, rec: rec, opts: registry.RegisterOptions{TTL: rc.TTL, Logger: p.log}, log: p.log}
}

// registrarSpec is what survives the registrar actor's restarts.
type registrarSpec struct {
	reg  registry.Registry
	rec  registry.Record
	opts registry.RegisterOptions
	log  *slog.Logger
	// first is the registration made before the actor was spawned; the
	// actor takes it when it starts, and registers anew after a restart.
	first registry.Registration
}

// registrarActor holds the proxy's registration: written while the actor
// lives, removed when it stops. The registration does the retrying
// (registry down, lease or entries lost) on its own goroutine, so the
// actor only fails on a bug, and its supervisor restarts it. It is the
// supervisor's last child, so it stops first.
type registrarActor struct {
	spec *registrarSpec
	reg  registry.Registration
}

func registrarProps(spec *registrarSpec) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor { return &registrarActor{spec: spec} })
}

func (a *registrarActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		if a.spec.first != nil {
			a.reg, a.spec.first = a.spec.first, nil
			return
		}
		reg, err := a.spec.reg.RegisterProxy(a.spec.rec, a.spec.opts)
		if err != nil {
			panic(fmt.Errorf("registrar: %w", err))
		}
		a.reg = reg
	case *actor.Stopping, *actor.Restarting:
		if a.reg != nil {
			_ = a.reg.Close() // logs its own failure: the records then expire
			a.reg = nil
		}
	case *actor.Stopped:
	case *registeredQuery:
		msg.reply <- a.reg != nil && a.reg.Registered()
	default:
		a.spec.log.Warn("unexpected message", "actor", RegistrarName, "type", fmt.Sprintf("%T", msg))
	}
}

// registeredQuery asks the registrar whether the record is in the
// registry now.
type registeredQuery struct{ reply chan bool }

// spawnChild asks the supervisor to start one more child (the registrar,
// once the sockets are bound and their addresses known); done is told the
// result.
type spawnChild struct {
	child childSpec
	done  chan<- error
}
