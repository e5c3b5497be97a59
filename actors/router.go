package actors

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/zmq-proxy/zmq-proxy/transport"
)

// The proxy's routing, in the order a message meets it: the ROUTER
// socket actor (routerActor) and its socketSpec; route, which runs on the
// socket's reader goroutines, waits at the pause gate (pauseGate), parses
// each envelope once and posts the burst to the actors that must act on
// it; handle, the receiving actor's side, which sends; then the delivery
// messages (deliver) and the way into a socket actor, its inbox and
// mailbox (socketMailbox), shared by every socket actor. A CAST's path
// through the proxy is transport/conn.go, transport/router.go and this
// file (docs/ownership.md).

// Names of the socket actors, children of the supervisor.
const (
	FrontendName  = "frontend"
	BackendName   = "backend"
	PublisherName = "publisher"
)

// socketSpec is what survives a socket actor's restarts: where it binds
// (the address bound first, so that a restart keeps a random port), its
// counters, and whom it talks to.
type socketSpec struct {
	gate     *pauseGate // holds the readers while paused; nil = never (route)
	name     string
	endpoint string // tcp://host:port; the port is fixed after the first bind
	opts     transport.Options
	log      *slog.Logger
	debug    bool

	in     *inbox // this actor's own way in
	direct *inbox // where direct types read on this socket go
	pub    *inbox // where fanout types go
	ack    bool   // ACK fanout types to their senders (frontend only)

	// pubSub says whether fanout types are published or routed
	// (routesFanout); sock is this socket, directSock the one direct
	// types go to, for PubSubAuto's question "is the key connected there?".
	pubSub     PubSub
	sock       routerRef
	directSock *routerRef

	// bound is told the result of every bind (the proxy waits for the
	// first of each socket; later ones are restarts).
	bound func(bindResult)
	// notAccepting, once set (a drain), makes a bind take no connection.
	notAccepting *atomic.Bool

	versionWarn transport.LogLimit // warnings about unknown versions
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

type bindResult struct {
	name string
	addr string
	err  error
}

// routerActor owns one ROUTER socket: the frontend, the backend, or the one
// router of a single-router proxy. The socket's reader goroutines parse
// each burst and hand it to the actors that must act on it.
type routerActor struct {
	spec    *socketSpec
	root    *actor.RootContext
	sock    *transport.Router
	closing chan struct{} // closed before sock closes: releases the pause gate
}

// RouterProps is the props of a ROUTER socket actor.
func routerProps(spec *socketSpec) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor { return &routerActor{spec: spec} }, withSocketMailbox)
}

func (a *routerActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		a.start(ctx)
		a.spec.in.setUp() // bound: start panics if it cannot bind
	case *actor.Stopping, *actor.Restarting:
		a.spec.in.setDown()
		a.stop()
	case *actor.Stopped:
	case *deliver:
		if a.spec.in.take(msg) {
			a.handle(msg)
		}
	default:
		socketMessage(a.spec.name, a.spec.log, a.sock, msg)
	}
}

// socketMessage takes what the router and publisher actors take alike: a
// drain's stopAccepting (the socket, if bound, stops accepting), a failed
// socket (a panic: the supervisor restarts the actor), and anything else
// (logged as unexpected).
func socketMessage[S interface {
	comparable
	StopAccepting()
}](name string, log *slog.Logger, sock S, msg any) {
	switch msg := msg.(type) {
	case *stopAccepting:
		var unbound S
		if sock != unbound {
			sock.StopAccepting()
		}
		close(msg.done)
	case *socketFailed:
		panic(fmt.Errorf("%s socket: %w", name, msg.err))
	default:
		log.Warn("unexpected message", "actor", name, "type", fmt.Sprintf("%T", msg))
	}
}

func (a *routerActor) start(ctx actor.Context) {
	opts := a.spec.opts
	self, root := ctx.Self(), ctx.ActorSystem().Root
	a.root = root
	a.closing = make(chan struct{})
	closing := a.closing
	opts.OnBatch = func(b *transport.Batch) { a.route(root, closing, b) }
	opts.OnError = failureTo(root, self)
	a.sock = transport.NewRouter(opts)
	a.spec.bind(a.sock)
	a.spec.sock.Store(a.sock)
}

// binder is a socket that binds: transport.Router and transport.Pub.
type binder interface {
	Bind(endpoint string) error
	StopAccepting()
	Addr() string
	Close() error
}

// bind binds sock on the spec's endpoint and reports the result; it
// fails the actor (panics to its supervisor) when the bind fails. After
// the first bind the endpoint is the address bound, so a restart keeps a
// random port.
func (s *socketSpec) bind(sock binder) {
	if s.notAccepting != nil && s.notAccepting.Load() {
		sock.StopAccepting() // drained: bind the address, accept nothing
	}
	if err := sock.Bind(s.endpoint); err != nil {
		sock.Close()
		err = fmt.Errorf("bind %s %s: %w", s.name, s.endpoint, err)
		s.bound(bindResult{name: s.name, err: err})
		panic(err)
	}
	s.endpoint = sock.Addr()
	s.bound(bindResult{name: s.name, addr: sock.Addr()})
}

func (a *routerActor) stop() {
	a.spec.sock.Store(nil)
	if a.sock != nil {
		close(a.closing)
		a.sock.Close()
		a.sock = nil
	}
}

// route runs on the socket's reader goroutines: it waits while the proxy
// is paused, validates each envelope of a burst (the one parse), counts
// and drops the bad ones, and passes the burst on, once to each actor
// that has work in it. A burst read while the socket closes (closing) is
// released unrouted.
func (a *routerActor) route(root *actor.RootContext, closing <-chan struct{}, b *transport.Batch) {
	if g := a.spec.gate; g != nil && !g.wait(closing) {
		b.Release()
		return
	}
	var direct, fanout bool
	var routed routedSet
	for i := range b.Msgs {
		// The one parse: what it found travels with the batch
		// (Batch.Envelope), and a message it refuses is dropped here.
		env, err := b.Parse(i)
		if err != nil {
			a.drop(b.Peer, err)
			continue
		}
		if a.spec.debug {
			a.spec.log.Debug("message", "socket", a.spec.name, "from", printable(b.Peer), "type", env.Type.String(),
				"routing_key", printable(env.RoutingKey), "message_id", printable(env.MessageID), "frames", len(b.Msgs[i])+1)
		}
		switch {
		case !env.Type.IsFanout():
			direct = true
		case a.spec.routesFanout(env.RoutingKey):
			routed = routed.mark(i, len(b.Msgs))
			direct = true
		default:
			fanout = true
		}
	}
	ack := fanout && a.spec.ack
	n := btoi(direct) + btoi(fanout) + btoi(ack)
	if n == 0 {
		b.Release()
		return
	}
	for range n - 1 {
		b.Retain()
	}
	if direct {
		a.spec.direct.post(root, &deliver{kind: deliverDirect, batch: b, routed: routed})
	}
	if fanout {
		a.spec.pub.post(root, &deliver{kind: deliverFanout, batch: b, routed: routed})
	}
	if ack {
		a.spec.in.post(root, &deliver{kind: deliverAck, batch: b, routed: routed})
	}
}

// pauseGate holds the frontend's readers while the proxy is paused, as
// libzmq's zmq_proxy_steerable PAUSE does: nothing more is read from the
// clients, so their messages wait in their own queues and in the TCP
// buffers (bounded by the peers' high-water marks and the kernel), not
// in the proxy. Replies and ACKs on the backend flow on.
type pauseGate struct {
	mu     sync.Mutex
	paused bool
	resume chan struct{} // closed by Resume; replaced by Pause
}

func newPauseGate() *pauseGate {
	g := &pauseGate{resume: make(chan struct{})}
	close(g.resume)
	return g
}

// pause closes the gate; it reports whether it was open.
func (g *pauseGate) pause() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.paused {
		return false
	}
	g.paused = true
	g.resume = make(chan struct{})
	return true
}

// open opens the gate; it reports whether it was closed.
func (g *pauseGate) open() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.paused {
		return false
	}
	g.paused = false
	close(g.resume)
	return true
}

func (g *pauseGate) isPaused() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.paused
}

// wait blocks while the gate is closed. It returns true when the gate is
// open, false when closing is closed first (the socket is closing, and
// its readers must not be held).
func (g *pauseGate) wait(closing <-chan struct{}) bool {
	g.mu.Lock()
	resume := g.resume
	g.mu.Unlock()
	select {
	case <-resume:
		return true
	case <-closing:
		return false
	}
}

func (a *routerActor) drop(from []byte, err error) {
	st := a.spec.opts.Stats
	if errors.Is(err, transport.ErrUnknownVersion) {
		total := st.DroppedUnknownVersion.Add(1)
		// docs/protocol.md: dropped with a warning. One a minute at most per socket,
		// with the count, so that a peer cannot flood the log.
		if a.spec.versionWarn.Allow(time.Now()) {
			a.spec.log.Warn("message dropped: unknown version", "socket", a.spec.name, "from", printable(from),
				"err", err, "dropped_total", total)
		}
		return
	}
	st.DroppedMalformed.Add(1)
	if a.spec.debug {
		a.spec.log.Debug("message dropped: malformed", "socket", a.spec.name, "from", printable(from), "err", err)
	}
}

// handle sends a delivered burst's direct envelopes (and its routed
// fanout ones) to their routing keys, or ACKs its published fanout
// envelopes, on this actor's ROUTER.
func (a *routerActor) handle(d *deliver) {
	defer d.batch.Release()
	if a.sock == nil {
		return
	}
	var head [5][]byte
	var nack routedSet
	last := len(d.batch.Msgs) - 1
	for i := range d.batch.Msgs {
		env, ok := d.batch.Envelope(i) // parsed by route, on the reader
		if !ok || !d.mine(i, env.Type) {
			continue
		}
		// The burst's last message may be written at once, by this actor,
		// if its peer's writer is idle (one hand-off less at low load).
		send := a.sock.Send
		if i == last {
			send = a.sock.SendNow
		}
		switch d.kind {
		case deliverAck:
			send(env.ReplyID, env.AckHead(&head, a.sock.Identity()), nil)
			continue
		case deliverNack:
			if send(env.ReplyID, env.NackHead(&head), nil) {
				a.spec.opts.Stats.Nacked.Add(1)
			}
			continue
		}
		if send(env.RoutingKey, env.DirectHead(&head), env.Payload) {
			continue
		}
		if a.spec.debug {
			a.spec.log.Debug("message dropped", "socket", a.spec.name, "to", printable(env.RoutingKey),
				"message_id", printable(env.MessageID))
		}
		// Its sender asked to be told that the routing key is not
		// connected here (not for a full queue: that peer is alive).
		// Only requests: a reply or an ACK to a client that went has no
		// one to tell.
		if (env.Type == transport.TypeCall || env.Type == transport.TypeCast) && env.WantsNack() && !a.sock.Connected(env.RoutingKey) {
			nack = nack.mark(i, len(d.batch.Msgs))
		}
	}
	if nack != nil {
		// The senders are on the other socket (on this one, for a single
		// router): its actor, the one where direct types read here go,
		// sends the NACKs.
		d.batch.Retain()
		a.spec.direct.post(a.root, &deliver{kind: deliverNack, batch: d.batch, routed: nack})
	}
}

// ---- Deliveries: what a reader posts to a socket actor ----

// deliverKind says what a socket actor must do with a delivered batch.
type deliverKind uint8

const (
	deliverDirect    deliverKind = iota // send direct types on this ROUTER, to their routing key
	deliverFanout                       // publish fanout types on this PUB
	deliverAck                          // ACK fanout types to their senders on this ROUTER
	deliverRepublish                    // publish every message unchanged (local proxy)
	deliverNack                         // NACK the marked messages to their senders on this ROUTER
)

// deliver hands one read burst to a socket actor: one mailbox message per
// burst, never one per envelope. The envelopes were parsed once, where
// the burst was read (routerActor.route); the receiver reads them back
// (Batch.Envelope), sends the ones it is concerned with, and releases the
// batch.
type deliver struct {
	kind  deliverKind
	batch *transport.Batch
	// routed marks the fanout messages routed like direct types, decided
	// once where the burst was read (routesFanout); nil: none. For
	// deliverNack it marks the messages to NACK.
	routed routedSet
}

// mine reports whether message i of the batch, whose envelope's type is
// t, is the receiver's to send: for deliverDirect the direct types and
// the fanouts routed like them; for deliverFanout and deliverAck the
// fanouts published (to publish, or to ACK).
func (d *deliver) mine(i int, t transport.MsgType) bool {
	if d.kind == deliverNack {
		return d.routed.has(i)
	}
	published := t.IsFanout() && !d.routed.has(i)
	return published == (d.kind != deliverDirect)
}

// count is how many of the batch's messages the receiver would send.
func (d *deliver) count() int {
	if d.kind == deliverRepublish {
		return len(d.batch.Msgs)
	}
	n := 0
	for i := range d.batch.Msgs {
		if env, ok := d.batch.Envelope(i); ok && d.mine(i, env.Type) {
			n++
		}
	}
	return n
}

// stopAccepting tells a socket actor to close its listener (a drain); the
// actor closes done when it has.
type stopAccepting struct{ done chan struct{} }

// socketFailed tells a socket actor that its socket broke for good; the
// actor fails, and its supervisor restarts it.
type socketFailed struct{ err error }

// failureTo is a socket's OnError: it tells the owning actor, which fails
// (its supervisor then restarts it on the same address).
func failureTo(root *actor.RootContext, self *actor.PID) func(error) {
	return func(err error) { root.Send(self, &socketFailed{err}) }
}

// ---- The way in: a socket actor's inbox and mailbox ----

// inbox is the way into a socket actor's mailbox for the batches other
// actors' readers deliver to it. A batch holds a read buffer and one of
// its reader's in-flight slots until every holder releases it, so a
// batch that waits in a mailbox that does not run (the actor failed and
// waits out its restart backoff, or it stopped) would stop that reader,
// and with it every other actor the reader feeds. The inbox prevents that:
// while the actor is down, what is delivered to it is released at once
// and counted as dropped (reason "restarting"); when it goes down, what
// waits in its mailbox is released at once, and the actor skips it when
// it runs again.
type inbox struct {
	pid   *actor.PID
	stats *transport.Stats // where the drops are counted

	down    atomic.Bool
	mu      sync.Mutex
	pending map[*deliver]struct{} // posted, not yet taken or released
}

func newInbox(pid *actor.PID, stats *transport.Stats) *inbox {
	return &inbox{pid: pid, stats: stats, pending: make(map[*deliver]struct{})}
}

// post delivers d to the actor, or releases it if the actor is down.
func (in *inbox) post(root *actor.RootContext, d *deliver) {
	in.mu.Lock()
	in.pending[d] = struct{}{}
	in.mu.Unlock()
	if in.down.Load() {
		// Gone down between: whichever of us and setDown claims d first
		// releases it.
		in.drop(d)
		return
	}
	root.Send(in.pid, d)
}

// take is the actor's side: it reports whether d is still to be handled
// (false if it was released while the actor was down).
func (in *inbox) take(d *deliver) bool {
	in.mu.Lock()
	_, ok := in.pending[d]
	delete(in.pending, d)
	in.mu.Unlock()
	return ok
}

// drop releases d if nobody has taken it yet, and counts its messages.
func (in *inbox) drop(d *deliver) {
	if !in.take(d) {
		return
	}
	in.stats.DroppedRestarting.Add(uint64(d.count()))
	d.batch.Release()
}

// setDown marks the actor down (failed, stopping) and releases what waits
// for it. Called by the supervisor's strategy when the actor fails, and by
// the actor when it stops.
func (in *inbox) setDown() {
	in.down.Store(true)
	in.mu.Lock()
	waiting := slices.Collect(maps.Keys(in.pending))
	in.mu.Unlock()
	for _, d := range waiting {
		in.drop(d)
	}
}

// setUp marks the actor running again (its Started).
func (in *inbox) setUp() { in.down.Store(false) }

// maxInline is how many deliveries a reader goroutine handles for a socket
// actor before it hands the rest of the mailbox to a goroutine of its own.
const maxInline = 4

// socketMailbox is a socket actor's mailbox. It keeps protoactor's
// semantics (one message at a time, in order; system messages first; a
// suspended mailbox runs only system messages; a panic is escalated to
// the supervisor) and changes one thing: a delivery posted to an idle
// actor runs at once on the goroutine that posted it, instead of a
// goroutine started for it.
//
// At low load that is the hand-off that costs: a reader that posts a burst
// to the backend actor would start a goroutine, wake another thread to run
// it, and sleep. Here the reader runs the actor's Receive itself (the actor
// still owns its socket: nothing else runs its Receive meanwhile), so a
// message goes from one socket to the other on one goroutine.
//
// Only deliveries run inline: they do nothing that blocks (queue to peers,
// at most one non-blocking write each). Everything else (Started,
// Stopping, Restarting, SuspendMailbox, stopAccepting, socketFailed)
// runs on the dispatcher's goroutine, as in protoactor's mailbox: a
// Stopping run by a reader would wait, in Close, for that reader to end.
// Under load a reader hands over after maxInline deliveries, so no reader
// stops reading its own connection for long, and bursts from several
// readers are still handled in batches by one goroutine.
type socketMailbox struct {
	invoker    actor.MessageInvoker
	dispatcher actor.Dispatcher

	mu        sync.Mutex
	user      []any // user[head:] waits
	head      int
	system    []any
	running   bool // a goroutine (inline or the dispatcher's) runs the mailbox
	suspended bool
}

func newSocketMailbox() actor.Mailbox { return &socketMailbox{} }

// withSocketMailbox is the props option of the socket actors.
var withSocketMailbox = actor.WithMailbox(newSocketMailbox)

func (m *socketMailbox) RegisterHandlers(invoker actor.MessageInvoker, dispatcher actor.Dispatcher) {
	m.invoker, m.dispatcher = invoker, dispatcher
}

func (m *socketMailbox) Start() {}

func (m *socketMailbox) UserMessageCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.user) - m.head
}

func (m *socketMailbox) PostSystemMessage(msg any) {
	m.mu.Lock()
	m.system = append(m.system, msg)
	start := !m.running
	m.running = true
	m.mu.Unlock()
	if start {
		m.dispatcher.Schedule(m.run)
	}
}

func (m *socketMailbox) PostUserMessage(msg any) {
	m.mu.Lock()
	m.user = append(m.user, msg)
	if m.running || m.suspended {
		m.mu.Unlock()
		return
	}
	m.running = true
	_, inline := msg.(*deliver)
	inline = inline && len(m.user)-m.head == 1 && len(m.system) == 0
	m.mu.Unlock()
	if inline {
		m.runInline()
	} else {
		m.dispatcher.Schedule(m.run)
	}
}

// popUser takes the next user message; it returns nil when there is none.
// Called with mu held.
func (m *socketMailbox) popUser() any {
	if m.head == len(m.user) {
		return nil
	}
	msg := m.user[m.head]
	m.user[m.head] = nil
	m.head++
	if m.head == len(m.user) {
		m.user, m.head = m.user[:0], 0
	}
	return msg
}

// runInline runs deliveries on the posting goroutine while nothing else
// waits: at most maxInline, then the rest goes to the dispatcher.
func (m *socketMailbox) runInline() {
	for n := 0; ; n++ {
		m.mu.Lock()
		ok := false
		if n < maxInline && len(m.system) == 0 && !m.suspended && m.head < len(m.user) {
			_, ok = m.user[m.head].(*deliver)
		}
		if !ok {
			idle := len(m.system) == 0 && (m.suspended || m.head == len(m.user))
			m.running = !idle
			m.mu.Unlock()
			if !idle {
				m.dispatcher.Schedule(m.run)
			}
			return
		}
		msg := m.popUser()
		m.mu.Unlock()
		if !m.invoke(msg, false) {
			// Failed: the suspension (a system message) is queued now.
			m.dispatcher.Schedule(m.run)
			return
		}
	}
}

// run is the dispatcher's side, as protoactor's mailbox: system messages
// first, user messages unless suspended, yielding every Throughput
// messages, until the mailbox is empty.
func (m *socketMailbox) run() {
	t := m.dispatcher.Throughput()
	for i := 0; ; i++ {
		if i > t {
			i = 0
			runtime.Gosched()
		}
		m.mu.Lock()
		if len(m.system) > 0 {
			msg := m.system[0]
			m.system[0] = nil
			m.system = m.system[1:]
			switch msg.(type) {
			case *actor.SuspendMailbox:
				m.suspended = true
				m.mu.Unlock()
			case *actor.ResumeMailbox:
				m.suspended = false
				m.mu.Unlock()
			default:
				m.mu.Unlock()
				m.invoke(msg, true)
			}
			continue
		}
		var msg any
		if !m.suspended {
			msg = m.popUser()
		}
		if msg == nil {
			m.running = false
			m.mu.Unlock()
			return
		}
		m.mu.Unlock()
		m.invoke(msg, false)
	}
}

// invoke runs one message; a panic goes to the supervisor (which suspends
// this mailbox) and invoke reports false.
func (m *socketMailbox) invoke(msg any, system bool) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			m.invoker.EscalateFailure(r, msg)
			ok = false
		}
	}()
	if system {
		m.invoker.InvokeSystemMessage(msg)
	} else {
		m.invoker.InvokeUserMessage(msg)
	}
	return true
}

// printable renders an identity or key for logs.
func printable(b []byte) string { return transport.Printable(b) }
