package actors

import (
	"github.com/asynkron/protoactor-go/actor"

	"github.com/zmq-proxy/zmq-proxy/transport"
)

// publisherActor owns the PUB socket.
type publisherActor struct {
	spec *socketSpec
	sock *transport.Pub
}

func publisherProps(spec *socketSpec) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor { return &publisherActor{spec: spec} }, withSocketMailbox)
}

func (a *publisherActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		opts := a.spec.opts
		self, root := ctx.Self(), ctx.ActorSystem().Root
		opts.OnError = failureTo(root, self)
		a.sock = transport.NewPub(opts)
		a.spec.bind(a.sock)
		a.spec.in.setUp()
	case *actor.Stopping, *actor.Restarting:
		a.spec.in.setDown()
		if a.sock != nil {
			a.sock.Close()
			a.sock = nil
		}
	case *actor.Stopped:
	case *deliver:
		if a.spec.in.take(msg) {
			a.publish(msg)
		}
	default:
		socketMessage(a.spec.name, a.spec.log, a.sock, msg)
	}
}

// publish sends a burst's fanout envelopes as
// [routing_key, version, type, message_id, payload...].
func (a *publisherActor) publish(d *deliver) {
	defer d.batch.Release()
	if a.sock == nil {
		return
	}
	// The burst's last message may be written at once, by this actor, to
	// subscribers whose writers are idle (one hand-off less at low load).
	last := len(d.batch.Msgs) - 1
	publish := func(i int) func(head, tail [][]byte) int {
		if i == last {
			return a.sock.PublishNow
		}
		return a.sock.Publish
	}
	if d.kind == deliverRepublish {
		for i, m := range d.batch.Msgs {
			publish(i)(m, nil)
		}
		return
	}
	var head [5][]byte
	for i := range d.batch.Msgs {
		env, ok := d.batch.Envelope(i)   // parsed by route, on the reader
		if !ok || !d.mine(i, env.Type) { // routed ones went to a ROUTER
			continue
		}
		publish(i)(env.FanoutHead(&head), env.Payload)
	}
}
