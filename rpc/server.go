package rpc

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/zmq-proxy/zmq-proxy/internal/defaults"
	"github.com/zmq-proxy/zmq-proxy/registry"
	"github.com/zmq-proxy/zmq-proxy/transport"
	"github.com/zmq-proxy/zmq-proxy/transport/security"
)

// Defaults of ServerConfig.
const (
	DefaultWorkers         = 16
	DefaultMessageTTL      = 300 * time.Second // oslo's rpc_message_ttl
	DefaultMaxSeen         = 1_000_000         // about 80 MB when full; see MaxSeen
	DefaultMaxReplyBytes   = 64 << 20
	DefaultShutdownTimeout = 10 * time.Second
)

// Message is what a handler gets.
type Message struct {
	Type MsgType // TypeCall, TypeCast, TypeCastFanout or TypeNotify
	// Method of a CALL, CAST or CAST_FANOUT.
	Method string
	// MessageID as the sender made it.
	MessageID string
	// ReplyID is the sender's identity (direct types), "" when published.
	ReplyID string
	// RoutingKey is the target identity of a direct message, the topic of
	// a fanout, topic.priority of a notification.
	RoutingKey string
	// Context and Args as the sender encoded them (JSON).
	Context json.RawMessage
	Args    json.RawMessage
	// Notification, for NOTIFY.
	Notification *Notification
}

// Handler handles one method. Its result (any JSON value) is the reply of
// a CALL; an error becomes the reply's failure (a *RemoteError as it is,
// any other error as a RuntimeError). Casts and fanouts have no reply.
type Handler func(ctx context.Context, m *Message) (any, error)

// ServerConfig configures a Server.
type ServerConfig struct {
	// Registry is where the server registers its targets (Topic, and
	// Topic/Server) and finds the proxies (registry.Open,
	// registry.NewEtcd, registry.NewRedis). Required; the server does not
	// close it.
	Registry registry.Registry
	// Host is this machine's name: the first part of the identity, and how
	// the node's local publisher proxy is found; default os.Hostname().
	Host string
	// Topic the server serves, and optionally its Server name.
	Topic, Server string
	// Handlers by method name.
	Handlers map[string]Handler
	// Notify, if set, gets the notifications sent to Topic.<priority>.
	Notify func(ctx context.Context, m *Message)
	// Observe, if set, sees every message once, before it is handled.
	Observe func(m *Message)
	// Workers is how many handlers run at once; default DefaultWorkers.
	Workers int
	// MessageTTL is how long message ids are remembered after their last
	// use (receipt, or the reply of a CALL), MaxSeen how many at most, and
	// MaxReplyBytes how many bytes of CALL replies are kept to be sent
	// again; defaults DefaultMessageTTL, DefaultMaxSeen and
	// DefaultMaxReplyBytes. The promise "handled once" holds for a resend
	// that comes while its id is remembered: MaxSeen must cover the
	// server's peak rate times the longest a client may send a message
	// again, its CallTimeout (or the Cast's context) plus the longest a
	// proxy may hang before it delivers what it held. The default, 1M ids,
	// covers 16,000 messages a second over a 60 s CallTimeout. Ids
	// forgotten sooner than MessageTTL for want of room are counted
	// (ServerStats.Evicted) and logged.
	MessageTTL    time.Duration
	MaxSeen       int
	MaxReplyBytes int
	// Acks makes the server ACK every CALL and CAST on receipt, as
	// oslo.messaging's servers do with rpc_use_acks: set it as the
	// deployment's oslo.messaging services set it. Without it (the
	// default, as in oslo.messaging), a server ACKs only the messages whose
	// sender asked for an ACK in the message id (clients of this package
	// with ClientConfig.Acks), so that an oslo.messaging client, which
	// fails on an ACK it did not ask for, is never sent one.
	Acks bool
	// testNoAcks: the server ACKs nothing, even when asked (tests of a
	// server that does not answer).
	testNoAcks bool
	// TargetTTL is the TTL of the server's registration (etcd's lease,
	// or the Redis keys' expiry); default registry.DefaultTTL.
	TargetTTL time.Duration
	// ShutdownTimeout: Close cancels the handlers' context after it.
	ShutdownTimeout time.Duration
	// HWM is each link's outbound high-water mark, in messages.
	HWM int
	// Security is the client side of the proxies' PLAIN or CURVE, for the
	// backends and the publishers; SubSecurity, if set, replaces it for
	// the publishers (a node's local publisher with keys of its own).
	Security, SubSecurity security.Mechanism
	// Logger gets the library's log lines; nil = none.
	Logger *slog.Logger
	// StartTimeout bounds NewServer when its context has no deadline;
	// default DefaultStartTimeout.
	StartTimeout time.Duration
	// Node is the name of the node whose local publisher proxy the server
	// subscribes on (the proxy's --name; in Kubernetes the node name, from
	// the downward API, while Host is the pod's name); default $NODE_NAME,
	// else Host.
	Node string
}

func (c *ServerConfig) setDefaults() error {
	if err := commonDefaults("ServerConfig", c.Registry, &c.Host, &c.Logger); err != nil {
		return err
	}
	if c.Node == "" {
		c.Node = cmp.Or(os.Getenv("NODE_NAME"), c.Host)
	}
	defaults.Set(&c.TargetTTL, registry.DefaultTTL)
	if err := (Target{Topic: c.Topic, Server: c.Server}).validate(); err != nil {
		return err
	}
	defaults.Set(&c.Workers, DefaultWorkers)
	defaults.Set(&c.MessageTTL, DefaultMessageTTL)
	defaults.Set(&c.MaxSeen, DefaultMaxSeen)
	defaults.Set(&c.MaxReplyBytes, DefaultMaxReplyBytes)
	defaults.Set(&c.ShutdownTimeout, DefaultShutdownTimeout)
	return nil
}

// ServerStats are a server's counters.
type ServerStats struct {
	Received   atomic.Uint64 // messages for this server, duplicates included
	Handled    atomic.Uint64 // handler runs
	Duplicates atomic.Uint64 // messages seen before: acked again, not handled
	Acks       atomic.Uint64 // ACKs sent
	Replies    atomic.Uint64 // replies sent, again for duplicates included
	Unsent     atomic.Uint64 // replies and ACKs no proxy could take
	Malformed  atomic.Uint64 // messages dropped as malformed (an empty message id among them)
	Panics     atomic.Uint64 // panics of handlers, Notify and Observe, recovered
	// Evicted: message ids forgotten before MessageTTL because MaxSeen
	// were remembered; RepliesDropped: CALL replies no longer kept for
	// want of MaxReplyBytes (a resent CALL then gets a ReplyDropped
	// failure; its handler does not run again). Read them through Stats.
	Evicted        atomic.Uint64
	RepliesDropped atomic.Uint64
}

// Server serves one target: it keeps a DEALER connection to every proxy's
// backend (a single-router proxy's frontend), subscribes its topic on its
// node's local publisher (else on every central publisher), and registers
// its identity for topic and topic/server under a lease. Every message id
// is remembered for MessageTTL (at most MaxSeen ids): a message sent again
// within that is acknowledged again and a CALL's reply sent again, but its
// handler does not run twice.
type Server struct {
	cfg     ServerConfig
	log     *slog.Logger
	id      string
	disc    *discovery
	links   *links
	sub     *transport.Sub
	seen    *seen
	names   map[string]string // methodNames(cfg.Handlers)
	reg     registry.Registration
	targets []registry.Target // what reg registers
	stats   ServerStats

	subMu sync.Mutex // guards subEPs (the discovery goroutine and Close)
	subEP map[string]bool

	watchCancel context.CancelFunc
	ctx         context.Context // handlers' context
	cancel      context.CancelFunc

	lastTaken     atomic.Int64 // unix nanoseconds of the last message taken (a drain waits for quiet)
	evictedLogged atomic.Uint64
	evictWarn     transport.LogLimit

	gate     sync.RWMutex // readers hold it to ack and enqueue; Close takes it to stop them
	stopping bool
	jobs     chan job
	workers  sync.WaitGroup
	once     sync.Once
}

type job struct {
	in  inbound
	via *link // nil when published
}

// NewServer starts a server. It returns once it is registered, so that a
// client started after it finds it (ctx bounds the wait).
func NewServer(ctx context.Context, cfg ServerConfig) (_ *Server, err error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:   cfg,
		log:   cfg.Logger,
		id:    cfg.Host + "/" + Target{Topic: cfg.Topic, Server: cfg.Server}.key() + "/" + uuid.NewString(),
		seen:  newSeen(cfg.MessageTTL, cfg.MaxSeen, cfg.MaxReplyBytes),
		names: methodNames(cfg.Handlers),
		subEP: make(map[string]bool),
		jobs:  make(chan job, 4*cfg.Workers),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	opts := transport.Options{Identity: []byte(s.id), HWM: cfg.HWM, Security: cfg.Security, Logger: s.log}
	subOpts := opts
	// Its answers go through proxies that answer: a hung one is given up
	// as a client gives it up.
	opts.Heartbeat, opts.HeartbeatTimeout = DefaultHeartbeat, DefaultHeartbeatTimeout
	s.links = newLinks(opts, s.log, s.recv, func(*link, bool) {})
	subOpts.OnBatch = s.recvPublished
	if cfg.SubSecurity != nil {
		subOpts.Security = cfg.SubSecurity
	}
	s.sub = transport.NewSub(subOpts)
	s.sub.Subscribe([]byte(cfg.Topic))
	for range cfg.Workers {
		s.workers.Add(1)
		go s.work()
	}
	s.disc = newDiscovery(s.log, s.setProxies, nil)
	wctx, wcancel := context.WithCancel(context.Background())
	s.watchCancel = wcancel
	s.disc.start(wctx, cfg.Registry, false)

	ctx, cancel := startContext(ctx, cfg.StartTimeout)
	defer cancel()
	if err := s.disc.waitSynced(ctx); err != nil {
		s.Close()
		return nil, notListed(cfg.Registry, err)
	}
	s.links.waitUp(ctx, s.disc.synced) // connected to a proxy, if any is registered
	started := time.Now()
	targets := []registry.Target{{Target: cfg.Topic, Identity: s.id, Host: cfg.Host, Started: started.UTC(), Generation: started.UnixNano()}}
	if cfg.Server != "" {
		t := targets[0]
		t.Target = cfg.Topic + "/" + cfg.Server
		targets = append(targets, t)
	}
	s.targets = targets
	reg, err := cfg.Registry.RegisterTargets(registry.RegisterOptions{TTL: cfg.TargetTTL, Logger: s.log}, targets...)
	if err != nil {
		s.Close()
		return nil, err
	}
	s.reg = reg
	select {
	case <-reg.Ready():
	case <-ctx.Done():
		s.Close()
		return nil, fmt.Errorf("rpc: server not registered in %s: %w", cfg.Registry, ctx.Err())
	}
	return s, nil
}

// Identity is the server DEALER's routing identity,
// host/topic[/server]/uuid.
func (s *Server) Identity() string { return s.id }

// Stats are the server's counters.
func (s *Server) Stats() *ServerStats {
	ev, dr := s.seen.counts()
	s.stats.Evicted.Store(ev)
	s.stats.RepliesDropped.Store(dr)
	return &s.stats
}

// Close is Shutdown bounded by ShutdownTimeout: it returns within about
// ShutdownTimeout and two seconds, whatever the handlers do.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	return s.Shutdown(ctx)
}

// Drain timing: after marking itself draining, a server takes messages
// until none came for drainQuiet (those sent before the clients saw the
// mark), at most drainMax.
const (
	drainQuiet = 100 * time.Millisecond
	drainMax   = time.Second
)

// Shutdown stops the server without breaking a promise it made: what it
// acknowledged is handled once, by it, and a CALL's reply sent.
//
//  1. Its registration is marked draining (Registration.UpdateTargets):
//     clients send it nothing new, and wait for what it acknowledged. It
//     takes what still arrives until its senders are quiet (drainQuiet, at
//     most drainMax). A registry without such a mark (oslo.messaging's
//     matchmaker) leaves it registered as it was.
//  2. It stops taking messages (what arrives is neither acked nor
//     handled; with acks its client sends it again, to another server
//     once this one has deregistered), and waits for the handlers to
//     finish what was taken and for their replies to be queued. When ctx
//     ends first, the handlers' context is cancelled, and Shutdown waits
//     a second more for them before it goes on.
//  3. It deregisters: clients send what it did not acknowledge
//     elsewhere, at once.
//  4. It stops following the registry, closes its SUB, and closes its
//     proxy connections after writing what is queued (up to a second each).
//
// It returns ctx's error if ctx ended before the handlers finished, else
// nil. Safe to call twice (the second call returns at once).
func (s *Server) Shutdown(ctx context.Context) error {
	var err error
	s.once.Do(func() { err = s.shutdown(ctx) })
	return err
}

func (s *Server) shutdown(ctx context.Context) error {
	if s.reg != nil {
		draining := make([]registry.Target, len(s.targets))
		for i, t := range s.targets {
			t.Draining = true
			draining[i] = t
		}
		if err := s.reg.UpdateTargets(ctx, draining...); err != nil {
			s.log.Debug("draining mark not written", "err", err)
		} else {
			s.waitQuiet(ctx)
		}
	}
	// When ctx ends, the handlers' context is cancelled: a reader blocked
	// on a full queue (holding the gate) waits for them.
	stopCancel := context.AfterFunc(ctx, s.cancel)
	defer stopCancel()
	s.gate.Lock()
	s.stopping = true
	close(s.jobs)
	s.gate.Unlock()
	workersDone := make(chan struct{})
	go func() { s.workers.Wait(); close(workersDone) }()
	var err error
	select {
	case <-workersDone:
	case <-ctx.Done():
		err = ctx.Err()
		s.log.Warn("shutdown: handlers still running, their context cancelled", "err", err)
		select {
		case <-workersDone:
		case <-time.After(time.Second):
			s.log.Warn("shutdown: handlers ignore their context; going on without them")
		}
	}
	if s.reg != nil {
		s.reg.Close()
	}
	s.watchCancel()
	s.disc.wg.Wait()
	s.sub.Close()
	s.cancel()
	s.links.close()
	return err
}

// waitQuiet waits until no message was taken for drainQuiet, at most
// drainMax or until ctx ends.
func (s *Server) waitQuiet(ctx context.Context) {
	t := time.NewTicker(drainQuiet / 5)
	defer t.Stop()
	start := time.Now()
	deadline := start.Add(drainMax)
	for {
		now := time.Now()
		last := time.Unix(0, max(s.lastTaken.Load(), start.UnixNano())) // quiet since the drain began, at least
		if now.Sub(last) >= drainQuiet || now.After(deadline) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// setProxies keeps a link to every backend and the SUB on the node's
// local publisher, else on every central publisher.
func (s *Server) setProxies(recs map[string]registry.Record) {
	s.links.follow(recs, serverAddr)
	// The topic's subscription: on this node's local publisher proxy,
	// else on every central proxy's publisher.
	var local string
	want := make(map[string]bool)
	for _, r := range recs {
		switch {
		case r.Publisher == "":
		case r.Kind != registry.KindLocal:
			want[r.Publisher] = true
		case r.Host == s.cfg.Node:
			local = r.Publisher
		}
	}
	if local != "" {
		want = map[string]bool{local: true}
	}
	s.subMu.Lock()
	defer s.subMu.Unlock()
	for ep := range want {
		if !s.subEP[ep] {
			if err := s.sub.Connect(ep); err != nil {
				s.log.Warn("publisher address unusable", "endpoint", ep, "err", err)
				continue
			}
			s.subEP[ep] = true
			if local != "" {
				s.log.Info("subscribed on the node's local publisher", "topic", s.cfg.Topic, "node", s.cfg.Node, "publisher", ep)
			} else {
				s.log.Info("subscribed on a central publisher (no local publisher registered for this node)",
					"topic", s.cfg.Topic, "node", s.cfg.Node, "publisher", ep)
			}
		}
	}
	for ep := range s.subEP {
		if !want[ep] {
			_ = s.sub.Disconnect(ep)
			delete(s.subEP, ep)
		}
	}
}

// recv takes what a backend link received: CALL and CAST (and, from a
// router-only proxy, CAST_FANOUT and NOTIFY).
func (s *Server) recv(l *link, b *transport.Batch) {
	defer b.Release()
	now := time.Now() // one read's messages arrived together: one clock read (a tenth of take's cost per message)
	for _, m := range b.Msgs {
		in, err := parseDirect(m)
		if err != nil || in.typ == transport.TypeReply || in.typ == transport.TypeAck || in.typ == transport.TypeNack {
			s.stats.Malformed.Add(1)
			s.log.Debug("message dropped", "err", err, "type", in.typ)
			continue
		}
		s.takeAt(in, l, now)
	}
}

// recvPublished takes what the SUB received: CAST_FANOUT for the topic,
// and NOTIFY for topic.<priority> when Notify is set. Other topics that
// share the prefix are not ours.
func (s *Server) recvPublished(b *transport.Batch) {
	defer b.Release()
	now := time.Now()
	for _, m := range b.Msgs {
		in, err := parsePublished(m)
		if err != nil {
			s.stats.Malformed.Add(1)
			continue
		}
		if !s.ours(in) {
			continue
		}
		s.takeAt(in, nil, now)
	}
}

func (s *Server) ours(in inbound) bool {
	if in.typ == transport.TypeNotify {
		pri, ok := strings.CutPrefix(in.peer, s.cfg.Topic+".")
		return ok && pri != "" && s.cfg.Notify != nil
	}
	return in.peer == s.cfg.Topic
}

// take acks a CALL or CAST, and queues what is new for a worker. A
// duplicate is acked again and, for a handled CALL, answered again. An
// id is remembered with its sender; a message without an id is dropped.
func (s *Server) take(in inbound, via *link) { s.takeAt(in, via, time.Now()) }

// takeAt is take of a message that arrived at now.
func (s *Server) takeAt(in inbound, via *link, now time.Time) {
	s.gate.RLock()
	defer s.gate.RUnlock()
	if s.stopping {
		return
	}
	if in.msgID == "" {
		s.stats.Malformed.Add(1)
		s.log.Debug("message dropped: no message id", "type", in.typ, "from", in.peer)
		return
	}
	s.stats.Received.Add(1)
	direct := in.typ == transport.TypeCall || in.typ == transport.TypeCast
	if direct && (s.cfg.Acks || transport.IDFlags(in.msgID)&idAck != 0) && !s.cfg.testNoAcks {
		s.answer(via, transport.TypeAck, in, nil)
	}
	fresh, prev := s.seen.firstOf(in.peer, in.msgID, in.typ == transport.TypeCall, now)
	if !fresh {
		s.stats.Duplicates.Add(1)
		if in.typ == transport.TypeCall && prev.done {
			reply := prev.reply
			if reply == nil { // dropped for want of MaxReplyBytes: say so, never run it again
				reply, _ = encodeReply(nil, remoteFailure(&RemoteError{Class: "ReplyDropped", Module: "zmq_proxy",
					Message: "the call was handled; its reply is no longer kept (ServerConfig.MaxReplyBytes)"}))
			}
			s.answer(via, transport.TypeReply, in, reply)
		}
		return
	}
	s.noteEvicted(now)
	s.lastTaken.Store(now.UnixNano()) // only new messages: a drain waits for them, not for resends
	s.jobs <- job{in: in, via: via}
}

// noteEvicted logs, at most once a minute, that ids were forgotten before
// their TTL: the promise "handled once" no longer covers resends that
// late, and MaxSeen should grow.
func (s *Server) noteEvicted(now time.Time) {
	ev, _ := s.seen.counts()
	if ev == 0 || ev == s.evictedLogged.Load() || !s.evictWarn.Allow(now) {
		return
	}
	s.evictedLogged.Store(ev)
	s.log.Warn("message ids forgotten before their TTL: raise MaxSeen", "evicted_total", ev, "max_seen", s.cfg.MaxSeen,
		"message_ttl", s.cfg.MessageTTL)
}

// answer sends an ACK or REPLY back to the sender, through the proxy the
// message came by if it is still up, else through another.
func (s *Server) answer(via *link, typ transport.MsgType, in inbound, payload []byte) {
	h := [5][]byte{nil, version10, typeFrame[typ], readOnly(in.peer), readOnly(in.msgID)}
	var tail [][]byte
	var t [1][]byte
	if typ == transport.TypeReply {
		t[0] = payload
		tail = t[:]
	}
	if (via == nil || !via.send(h[:], tail)) && s.links.send(nil, h[:], tail) == nil {
		s.stats.Unsent.Add(1)
		return
	}
	if typ == transport.TypeAck {
		s.stats.Acks.Add(1)
	} else {
		s.stats.Replies.Add(1)
	}
}

func (s *Server) work() {
	defer s.workers.Done()
	for j := range s.jobs {
		s.handle(j)
	}
}

func (s *Server) handle(j job) {
	in := j.in
	m := &Message{Type: in.typ, MessageID: in.msgID, RoutingKey: s.cfg.Topic}
	var err error
	if in.typ == transport.TypeNotify {
		m.RoutingKey = in.peer
		var n Notification
		if n, err = decodeNotification(in.payload); err == nil {
			m.Notification = &n
		}
	} else {
		if j.via != nil {
			m.ReplyID = in.peer
			m.RoutingKey = s.id
		}
		var req request
		if m.Context, req, err = decodeRequestIn(in.payload, s.names); err == nil {
			m.Method, m.Args = req.Method, req.Args
		}
	}
	if err != nil {
		s.stats.Malformed.Add(1)
		s.log.Debug("payload dropped", "msg_id", in.msgID, "err", err)
		if in.typ == transport.TypeCall {
			s.reply(j, nil, remoteFailure(&RemoteError{Class: "ValueError", Module: "builtins", Message: err.Error()}))
		}
		return
	}
	if s.cfg.Observe != nil {
		s.callback("Observe", m, func() { s.cfg.Observe(m) })
	}
	if in.typ == transport.TypeNotify {
		s.stats.Handled.Add(1)
		s.callback("Notify", m, func() { s.cfg.Notify(s.ctx, m) })
		return
	}
	result, herr := s.run(m)
	if in.typ == transport.TypeCall {
		var failure *RemoteError
		if herr != nil {
			failure = remoteFailure(herr)
		}
		s.reply(j, result, failure)
		return
	}
	if herr != nil {
		s.log.Debug("handler failed", "method", m.Method, "msg_id", in.msgID, "err", herr)
	}
	// Only a CALL's entry is marked done (reply): a duplicate of anything
	// else is acked again and dropped, handled or not.
}

// callback runs Observe or Notify: a panic in it is counted and logged,
// and the worker goes on, as after a handler's.
func (s *Server) callback(what string, m *Message, fn func()) {
	defer func() {
		if r := recover(); r != nil {
			s.stats.Panics.Add(1)
			s.log.Warn("callback panicked", "callback", what, "msg_id", m.MessageID, "panic", fmt.Sprint(r))
		}
	}()
	fn()
}

// run calls the method's handler once; a panic is its failure.
func (s *Server) run(m *Message) (result any, err error) {
	h := s.cfg.Handlers[m.Method]
	if h == nil {
		return nil, &RemoteError{Class: "NoSuchMethod", Module: "oslo_messaging.rpc.dispatcher",
			Message: "Endpoint does not support RPC method " + m.Method, Args: []any{m.Method}}
	}
	s.stats.Handled.Add(1)
	defer func() {
		if r := recover(); r != nil {
			s.stats.Panics.Add(1)
			err = fmt.Errorf("handler %s panicked: %v", m.Method, r)
		}
	}()
	return h(s.ctx, m)
}

// reply encodes, remembers and sends a CALL's reply.
func (s *Server) reply(j job, result any, failure *RemoteError) {
	payload, err := encodeReply(result, failure)
	if err != nil {
		payload, _ = encodeReply(nil, remoteFailure(fmt.Errorf("result is not JSON: %w", err)))
	}
	s.seen.done(j.in.peer, j.in.msgID, payload, time.Now())
	s.answer(j.via, transport.TypeReply, j.in, payload)
}
