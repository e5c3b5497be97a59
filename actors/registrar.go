package actors

import (
	"fmt"
	"log/slog"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/zmq-proxy/zmq-proxy/registry"
)

// registrarName is the name of the actor that holds the registration.
const registrarName = "registrar"

// registrarSpec is what survives the registrar actor's restarts.
type registrarSpec struct {
	cfg registry.Config
	rec registry.Record
	log *slog.Logger
}

// registrarActor holds the proxy's etcd registration: a lease kept alive
// while the actor lives, revoked when it stops. registry.Registrar does
// the retrying (etcd down, lease lost) on its own goroutine, so the actor
// only fails on a bug, and its supervisor restarts it.
type registrarActor struct {
	spec *registrarSpec
	reg  *registry.Registrar
}

func registrarProps(spec *registrarSpec) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor { return &registrarActor{spec: spec} })
}

func (a *registrarActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		reg, err := registry.NewRegistrar(a.spec.cfg, a.spec.rec)
		if err != nil {
			panic(fmt.Errorf("registrar: %w", err))
		}
		a.reg = reg
	case *actor.Stopping, *actor.Restarting:
		if a.reg != nil {
			a.reg.Close()
			a.reg = nil
		}
	case *actor.Stopped:
	case *registeredQuery:
		msg.reply <- a.reg != nil && a.reg.Registered()
	default:
		a.spec.log.Warn("unexpected message", "actor", registrarName, "type", fmt.Sprintf("%T", msg))
	}
}

// registeredQuery asks the registrar whether the record is in etcd now.
type registeredQuery struct{ reply chan bool }

// spawnChild asks the supervisor to start one more child (the registrar,
// once the sockets are bound and their addresses known); done is told the
// result.
type spawnChild struct {
	child childSpec
	done  chan<- error
}
