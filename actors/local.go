package actors

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sort"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/zmq-proxy/zmq-proxy/registry"
	"github.com/zmq-proxy/zmq-proxy/transport"
)

// SubscriberName is the name of the local proxy's SUB socket actor.
const SubscriberName = "subscriber"

// subscriberSpec is what survives the subscriber actor's restarts.
type subscriberSpec struct {
	opts  transport.Options
	log   *slog.Logger
	pub   *inbox // the local PUB's actor
	in    *inbox // this actor's: it receives no batches, but is marked down while it restarts
	debug bool

	// static lists the publishers given by subscribe_on; when empty, the
	// central publishers come from the registry.
	static []string
	reg    registry.Registry

	// current is the set the actor is connected to; kept across restarts.
	current []string
}

// setPublishers tells the subscriber actor the central publishers to be
// connected to now.
type setPublishers struct{ endpoints []string }

// subscriberActor owns the local proxy's SUB socket: one connection per
// central publisher, subscribed to everything. What it reads goes, one
// batch per read burst, to the local publisher actor, which republishes it
// unchanged. Without subscribe_on it follows the registry: a registry watch
// runs beside it and tells it the central publishers as they come and go.
type subscriberActor struct {
	spec   *subscriberSpec
	sock   *transport.Sub
	cancel context.CancelFunc
	done   chan struct{}
}

func subscriberProps(spec *subscriberSpec) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor { return &subscriberActor{spec: spec} })
}

func (a *subscriberActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		a.start(ctx)
		a.spec.in.setUp()
	case *actor.Stopping, *actor.Restarting:
		a.spec.in.setDown()
		a.stop()
	case *actor.Stopped:
	case *setPublishers:
		a.follow(msg.endpoints)
	case *socketFailed:
		panic(fmt.Errorf("%s socket: %w", SubscriberName, msg.err))
	default:
		a.spec.log.Warn("unexpected message", "actor", SubscriberName, "type", fmt.Sprintf("%T", msg))
	}
}

func (a *subscriberActor) start(ctx actor.Context) {
	opts := a.spec.opts
	self, root := ctx.Self(), ctx.ActorSystem().Root
	pub := a.spec.pub
	debug, log := a.spec.debug, a.spec.log
	opts.OnBatch = func(b *transport.Batch) {
		if debug {
			for _, m := range b.Msgs {
				if len(m) > 0 {
					log.Debug("message", "socket", SubscriberName, "topic", printable(m[0]), "frames", len(m))
				}
			}
		}
		pub.post(root, &deliver{kind: deliverRepublish, batch: b})
	}
	opts.OnError = failureTo(root, self)
	a.sock = transport.NewSub(opts)
	a.sock.Subscribe(nil)
	want := a.spec.current
	a.spec.current = nil
	if len(a.spec.static) > 0 {
		want = a.spec.static
	}
	a.follow(want)
	if len(a.spec.static) == 0 && a.spec.reg != nil {
		wctx, cancel := context.WithCancel(context.Background())
		a.cancel, a.done = cancel, make(chan struct{})
		go a.watch(wctx, root, self)
	}
}

func (a *subscriberActor) stop() {
	if a.cancel != nil {
		a.cancel()
		<-a.done
		a.cancel = nil
	}
	if a.sock != nil {
		a.sock.Close()
		a.sock = nil
	}
}

// follow connects to the publishers that are new and disconnects from the
// ones that are gone: exactly one connection per central publisher.
func (a *subscriberActor) follow(endpoints []string) {
	want := slices.Clone(endpoints)
	sort.Strings(want)
	want = slices.Compact(want)
	for _, ep := range a.spec.current {
		if !slices.Contains(want, ep) {
			if err := a.sock.Disconnect(ep); err != nil {
				a.spec.log.Warn("disconnect failed", "publisher", ep, "err", err)
			}
			a.spec.log.Info("central publisher gone", "publisher", ep)
		}
	}
	for _, ep := range want {
		if !slices.Contains(a.spec.current, ep) {
			if err := a.sock.Connect(ep); err != nil {
				a.spec.log.Warn("bad publisher address", "publisher", ep, "err", err)
				continue
			}
			a.spec.log.Info("subscribing to central publisher", "publisher", ep)
		}
	}
	a.spec.current = want
}

// watch follows the central proxies in the registry and tells the actor
// their publishers after each change (once the first listing is complete).
// It runs beside the actor, which starts and stops it.
func (a *subscriberActor) watch(ctx context.Context, root *actor.RootContext, self *actor.PID) {
	defer close(a.done)
	_ = a.spec.reg.WatchProxies(ctx, registry.WatchOptions{Logger: a.spec.log}, func(recs map[string]registry.Record) {
		eps := make([]string, 0, len(recs))
		for _, rec := range recs {
			if rec.Kind == KindLocalPublisher.String() || rec.Publisher == "" {
				continue // a router-only proxy publishes nothing
			}
			eps = append(eps, rec.Publisher)
		}
		root.Send(self, &setPublishers{eps})
	})
}
