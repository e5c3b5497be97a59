package rpc

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/zmq-proxy/zmq-proxy/registry"
	redismm "github.com/zmq-proxy/zmq-proxy/registry/redis"
	"github.com/zmq-proxy/zmq-proxy/transport"
	"github.com/zmq-proxy/zmq-proxy/transport/security"
)

// Defaults of ServerConfig.
const (
	DefaultWorkers         = 16
	DefaultMessageTTL      = 300 * time.Second // oslo's rpc_message_ttl
	DefaultMaxSeen         = 100_000
	DefaultShutdownTimeout = 10 * time.Second
)

// Message is what a handler gets.
type Message struct {
	Type transport.MsgType // CALL, CAST, CAST_FANOUT or NOTIFY
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
	// Etcd is the registry, or Redis: oslo.messaging's Redis matchmaker,
	// where the server registers DEALER/<topic> and
	// DEALER/<topic>/<server> as oslo.messaging's servers do, read every
	// RedisPoll (default DefaultRedisPoll). One of them.
	Etcd      *clientv3.Client
	Redis     *redismm.Matchmaker
	RedisPoll time.Duration
	// Prefix of the registry keys; default registry.DefaultPrefix.
	Prefix string
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
	// MessageTTL is how long message ids are remembered, MaxSeen how many
	// at most; defaults DefaultMessageTTL and DefaultMaxSeen.
	MessageTTL time.Duration
	MaxSeen    int
	// DisableAcks stops the ACKs sent for every CALL and CAST on receipt.
	DisableAcks bool
	// TargetTTL is the lease of the server's registration; default
	// registry.DefaultTTL.
	TargetTTL time.Duration
	// ShutdownTimeout: Close cancels the handlers' context after it.
	ShutdownTimeout time.Duration
	// HWM is each link's outbound high-water mark, in messages.
	HWM int
	// Security is the client side of the proxies' PLAIN or CURVE, for the
	// backends and the publishers; SubSecurity, if set, replaces it for
	// the publishers (a node's local publisher with keys of its own).
	Security, SubSecurity security.Mechanism
	// Logger; nil = slog.Default().
	Logger *slog.Logger
}

func (c *ServerConfig) setDefaults() error {
	if err := commonDefaults("ServerConfig", c.Etcd, c.Redis, &c.RedisPoll, &c.Host, &c.Logger); err != nil {
		return err
	}
	if c.TargetTTL <= 0 {
		c.TargetTTL = registry.DefaultTTL
	}
	if err := (Target{Topic: c.Topic, Server: c.Server}).validate(); err != nil {
		return err
	}
	if c.Workers <= 0 {
		c.Workers = DefaultWorkers
	}
	if c.MessageTTL <= 0 {
		c.MessageTTL = DefaultMessageTTL
	}
	if c.MaxSeen <= 0 {
		c.MaxSeen = DefaultMaxSeen
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
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
	Malformed  atomic.Uint64 // messages dropped as malformed
	Panics     atomic.Uint64 // panics of handlers, Notify and Observe, recovered
}

// Server serves one target: it keeps a DEALER connection to every proxy's
// backend (a single-router proxy's frontend), subscribes its topic on its
// node's local publisher (else on every central publisher), and registers
// its identity for topic and topic/server under a lease. Every message id
// is remembered for MessageTTL (at most MaxSeen ids): a message sent again
// within that is acknowledged again and a CALL's reply sent again, but its
// handler does not run twice.
type Server struct {
	cfg   ServerConfig
	log   *slog.Logger
	id    string
	disc  *discovery
	links *links
	sub   *transport.Sub
	seen  *seen
	reg   *registry.Registrar // etcd
	rreg  *redismm.Registrar  // or Redis
	stats ServerStats

	subMu sync.Mutex // guards subEPs (the discovery goroutine and Close)
	subEP map[string]bool

	watchCancel context.CancelFunc
	ctx         context.Context // handlers' context
	cancel      context.CancelFunc

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
		seen:  newSeen(cfg.MessageTTL, cfg.MaxSeen),
		subEP: make(map[string]bool),
		jobs:  make(chan job, 4*cfg.Workers),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	opts := transport.Options{Identity: []byte(s.id), HWM: cfg.HWM, Security: cfg.Security, Logger: s.log}
	s.links = newLinks(opts, s.log, s.recv, func(*link, bool) {})
	subOpts := opts
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
	if cfg.Redis != nil {
		s.disc.startRedis(wctx, cfg.Redis, cfg.RedisPoll, false)
	} else {
		s.disc.start(wctx, cfg.Etcd, cfg.Prefix, false)
	}

	if err := s.disc.waitSynced(ctx); err != nil {
		s.Close()
		return nil, fmt.Errorf("rpc: registry not listed: %w", err)
	}
	s.links.waitUp(ctx, s.disc.synced) // connected to a proxy, if any is registered
	if cfg.Redis != nil {
		keys := []string{redismm.TopicKey(cfg.Topic)}
		if cfg.Server != "" {
			keys = append(keys, redismm.ServerKey(cfg.Topic, cfg.Server))
		}
		entries := make([]redismm.Entry, len(keys))
		for i, k := range keys {
			entries[i] = redismm.Entry{Key: k, Member: s.id}
		}
		if s.rreg, err = redismm.NewRegistrar(redismm.RegistrarConfig{Matchmaker: cfg.Redis, Entries: entries,
			TTL: max(cfg.TargetTTL.Truncate(time.Second), time.Second), Logger: s.log}); err != nil {
			s.Close()
			return nil, err
		}
		select {
		case <-s.rreg.Ready():
		case <-ctx.Done():
			s.Close()
			return nil, fmt.Errorf("rpc: server not registered in redis: %w", ctx.Err())
		}
		return s, nil
	}
	targets := []registry.Target{{Target: cfg.Topic, Identity: s.id, Host: cfg.Host, Started: time.Now().UTC()}}
	if cfg.Server != "" {
		targets = append(targets, registry.Target{Target: cfg.Topic + "/" + cfg.Server, Identity: s.id, Host: cfg.Host, Started: targets[0].Started})
	}
	reg, err := registry.NewTargetRegistrar(registry.Config{Client: cfg.Etcd, Prefix: cfg.Prefix, TTL: cfg.TargetTTL, Logger: s.log}, targets...)
	if err != nil {
		s.Close()
		return nil, err
	}
	s.reg = reg
	select {
	case <-reg.Ready():
	case <-ctx.Done():
		s.Close()
		return nil, fmt.Errorf("rpc: server not registered: %w", ctx.Err())
	}
	return s, nil
}

// Identity is the server DEALER's routing identity,
// host/topic[/server]/uuid.
func (s *Server) Identity() string { return s.id }

// Stats are the server's counters.
func (s *Server) Stats() *ServerStats { return &s.stats }

// Close shuts the server down, in this order:
//  1. its registration is revoked, so clients stop choosing it (with acks,
//     they send what it has not acknowledged to another server);
//  2. it stops following the registry and closes its SUB;
//  3. it stops taking messages (what arrives is neither acked nor handled)
//     and lets the handlers finish what was taken, sending their replies;
//     after ShutdownTimeout their context is cancelled;
//  4. it closes its proxy connections, after writing what is queued on
//     them (up to a second each).
//
// Safe to call twice.
func (s *Server) Close() error {
	s.once.Do(func() {
		if s.reg != nil {
			s.reg.Close()
		}
		if s.rreg != nil {
			s.rreg.Close()
		}
		s.watchCancel()
		s.disc.wg.Wait()
		s.sub.Close()
		// Handlers that outlast the timeout see their context cancelled;
		// a reader blocked on a full queue waits for them.
		t := time.AfterFunc(s.cfg.ShutdownTimeout, s.cancel)
		s.gate.Lock()
		s.stopping = true
		close(s.jobs)
		s.gate.Unlock()
		s.workers.Wait()
		t.Stop()
		s.cancel()
		s.links.close()
	})
	return nil
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
		case r.Host == s.cfg.Host:
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
	for _, m := range b.Msgs {
		in, err := parseDirect(m)
		if err != nil || in.typ == transport.TypeReply || in.typ == transport.TypeAck {
			s.stats.Malformed.Add(1)
			s.log.Debug("message dropped", "err", err, "type", in.typ)
			continue
		}
		s.take(in, l)
	}
}

// recvPublished takes what the SUB received: CAST_FANOUT for the topic,
// and NOTIFY for topic.<priority> when Notify is set. Other topics that
// share the prefix are not ours.
func (s *Server) recvPublished(b *transport.Batch) {
	defer b.Release()
	for _, m := range b.Msgs {
		in, err := parsePublished(m)
		if err != nil {
			s.stats.Malformed.Add(1)
			continue
		}
		if !s.ours(in) {
			continue
		}
		s.take(in, nil)
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
// duplicate is acked again and, for a handled CALL, answered again.
func (s *Server) take(in inbound, via *link) {
	s.gate.RLock()
	defer s.gate.RUnlock()
	if s.stopping {
		return
	}
	s.stats.Received.Add(1)
	direct := in.typ == transport.TypeCall || in.typ == transport.TypeCast
	if direct && !s.cfg.DisableAcks {
		s.answer(via, transport.TypeAck, in, nil)
	}
	fresh, prev := s.seen.first(in.msgID, time.Now())
	if !fresh {
		s.stats.Duplicates.Add(1)
		if in.typ == transport.TypeCall && prev.done {
			s.answer(via, transport.TypeReply, in, prev.reply)
		}
		return
	}
	s.jobs <- job{in: in, via: via}
}

// answer sends an ACK or REPLY back to the sender, through the proxy the
// message came by if it is still up, else through another.
func (s *Server) answer(via *link, typ transport.MsgType, in inbound, payload []byte) {
	h := [][]byte{nil, version10, typeFrame[typ], []byte(in.peer), []byte(in.msgID)}
	var tail [][]byte
	if typ == transport.TypeReply {
		tail = [][]byte{payload}
	}
	if (via == nil || !via.send(h, tail)) && s.links.send(nil, h, tail) == nil {
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
		if m.Context, req, err = decodeRequest(in.payload); err == nil {
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
	s.seen.done(j.in.msgID, payload)
	s.answer(j.via, transport.TypeReply, j.in, payload)
}
