package actors

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/zmq-proxy/zmq-proxy/registry"
)

// registrarName is the name of the actor that holds the registration.
const registrarName = "registrar"

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
		a.spec.log.Warn("unexpected message", "actor", registrarName, "type", fmt.Sprintf("%T", msg))
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
