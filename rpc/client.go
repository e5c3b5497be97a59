package rpc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/zmq-proxy/zmq-proxy/internal/defaults"
	"github.com/zmq-proxy/zmq-proxy/internal/oslo"
	"github.com/zmq-proxy/zmq-proxy/registry"
	"github.com/zmq-proxy/zmq-proxy/transport"
	"github.com/zmq-proxy/zmq-proxy/transport/security"
)

// Defaults of ClientConfig. oslo.messaging waits 15 s for the first ACK
// (rpc_ack_timeout_base); on a LAN an ACK takes well under a millisecond,
// and a proxy that dies is noticed at once by its connection, so a client
// of this package waits 2 s and retries sooner.
const (
	DefaultAckTimeout    = 2 * time.Second
	DefaultAckMultiplier = 2
	DefaultRetries       = 3
	DefaultCallTimeout   = 60 * time.Second
	// A proxy link that has sent something since it last heard from its
	// proxy pings it every DefaultHeartbeat, and is given up when the
	// proxy stays silent for DefaultHeartbeatTimeout: a hung proxy
	// (SIGSTOP, a frozen host) keeps its connections open, and what waits
	// on it is sent through another after 750 ms of silence and up to one
	// heartbeat to notice it (0.8 to 0.95 s measured by TestHungProxy and
	// e2e TestFaults, which assert 3 s and 2 s). An idle link sends
	// nothing.
	DefaultHeartbeat        = 100 * time.Millisecond
	DefaultHeartbeatTimeout = 750 * time.Millisecond
)

// ClientConfig configures a Client.
type ClientConfig struct {
	// Registry is where the proxies and the servers are found
	// (registry.Open, registry.NewEtcd, registry.NewRedis). Required; the
	// client does not close it.
	Registry registry.Registry
	// Host is this machine's name, the first part of the client's
	// identity; default os.Hostname().
	Host string
	// Acks turns on acknowledged delivery (oslo's rpc_use_acks): a CALL or
	// CAST not ACKed within AckTimeout is sent again, through another
	// proxy, after AckTimeout×AckMultiplier^n, at most Retries times; a
	// message waiting on a proxy that goes away is sent again at once.
	// Without Acks, delivery is at most once, as in oslo.messaging.
	Acks bool
	// AckTimeout, AckMultiplier and Retries shape the retries; defaults
	// DefaultAckTimeout, DefaultAckMultiplier, DefaultRetries.
	AckTimeout    time.Duration
	AckMultiplier float64
	Retries       int
	// CallTimeout bounds a Call, Cast, Fanout or Notify whose context has
	// no deadline; default DefaultCallTimeout.
	CallTimeout time.Duration
	// Heartbeat and HeartbeatTimeout: how often each proxy link is pinged,
	// and how long a silent proxy is waited for before its link is given
	// up; defaults DefaultHeartbeat and DefaultHeartbeatTimeout.
	Heartbeat, HeartbeatTimeout time.Duration
	// PublisherID of notifications; default Host.
	PublisherID string
	// HWM is each proxy link's outbound high-water mark, in messages.
	HWM int
	// Security is the client side of the proxies' PLAIN or CURVE
	// (security.CurveClient, security.PlainClient); nil = none.
	Security security.Mechanism
	// Logger gets the library's log lines (registrations, outages, lost
	// proxies); nil = none.
	Logger *slog.Logger
	// StartTimeout bounds NewClient (NewServer) when its context has no
	// deadline: the registry must be listed (and the server registered)
	// within it; default DefaultStartTimeout.
	StartTimeout time.Duration
}

func (c *ClientConfig) setDefaults() error {
	if err := commonDefaults("ClientConfig", c.Registry, &c.Host, &c.Logger); err != nil {
		return err
	}
	defaults.Set(&c.AckTimeout, DefaultAckTimeout)
	if c.AckMultiplier < 1 {
		c.AckMultiplier = DefaultAckMultiplier
	}
	if c.Retries < 0 {
		return fmt.Errorf("rpc: Retries %d is negative", c.Retries)
	}
	if c.Retries == 0 {
		c.Retries = DefaultRetries
	}
	defaults.Set(&c.CallTimeout, DefaultCallTimeout)
	defaults.Set(&c.Heartbeat, DefaultHeartbeat)
	defaults.Set(&c.HeartbeatTimeout, max(DefaultHeartbeatTimeout, 2*c.Heartbeat))
	if c.PublisherID == "" {
		c.PublisherID = c.Host
	}
	return nil
}

// commonDefaults checks and fills what clients and servers share: one
// registry, the host name and the logger.
func commonDefaults(what string, reg registry.Registry, host *string, log **slog.Logger) error {
	if reg == nil {
		return fmt.Errorf("rpc: %s needs a Registry", what)
	}
	if *host == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("rpc: host name: %w", err)
		}
		*host = h
	}
	if *log == nil {
		*log = slog.New(slog.DiscardHandler)
	}
	return nil
}

// DefaultStartTimeout bounds NewClient and NewServer when their context
// has no deadline.
const DefaultStartTimeout = 10 * time.Second

// startContext bounds a start whose ctx has no deadline.
func startContext(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	defaults.Set(&d, DefaultStartTimeout)
	return context.WithTimeout(ctx, d)
}

// notListed is NewClient's and NewServer's error when the registry did not
// answer in time; it names the registry ("etcd at host:port,...").
func notListed(reg registry.Registry, err error) error {
	return fmt.Errorf("rpc: %s did not answer (registry not listed): %w; is it running and reachable?", reg, err)
}

// Target names who handles a message: every server of Topic (one of them
// per call or cast, round-robin), or the one named Server.
type Target struct {
	Topic  string
	Server string
}

// ParseTarget reads "topic" or "topic.server" (the server name may hold
// dots; the topic may not).
func ParseTarget(s string) (Target, error) {
	topic, server, _ := strings.Cut(s, ".")
	t := Target{Topic: topic, Server: server}
	return t, t.validate()
}

func (t Target) String() string {
	if t.Server == "" {
		return t.Topic
	}
	return t.Topic + "." + t.Server
}

// key is the registry's name of the target: "topic" or "topic/server".
func (t Target) key() string {
	if t.Server == "" {
		return t.Topic
	}
	return t.Topic + "/" + t.Server
}

func (t Target) validate() error {
	if t.Topic == "" || strings.ContainsAny(t.Topic, "./\x00") || strings.ContainsAny(t.Server, "/\x00") {
		return fmt.Errorf("%w: %q (want topic or topic.server; a topic has no '.' or '/')", ErrBadTarget, t.String())
	}
	return nil
}

// ClientStats are a client's counters.
type ClientStats struct {
	Sent      atomic.Uint64 // messages sent, retries included
	Retries   atomic.Uint64 // of those, sent again for want of an ACK
	Resent    atomic.Uint64 // of those, sent again because their proxy or server went away
	Acks      atomic.Uint64 // ACKs received for pending messages
	Replies   atomic.Uint64 // replies received for pending calls
	Late      atomic.Uint64 // ACKs and replies for no pending message
	Malformed atomic.Uint64 // received messages dropped as malformed
	Nacks     atomic.Uint64 // NACKs: a proxy could not deliver a message (its server was not connected there)
	Probes    atomic.Uint64 // acknowledged CALLs sent again to their server, to learn whether it still lives
}

// Client sends calls, casts, fanouts and notifications through the
// central proxies it finds in the registry. It keeps one DEALER connection
// to every central proxy's frontend, balances over them round-robin, and
// follows proxies and servers as they come and go. Safe for concurrent use.
type Client struct {
	cfg   ClientConfig
	log   *slog.Logger
	id    string
	disc  *discovery
	links *links
	ids   *ids // message ids
	stats ClientStats

	cancel context.CancelFunc
	closed atomic.Bool
	once   sync.Once

	mu      sync.Mutex
	pending map[string]*pending  // by message id
	suspect map[string]time.Time // identities that missed an ACK, until
}

// pending is a message that waits for its ACK or reply.
type pending struct {
	typ     transport.MsgType
	target  string // registry key of the target; "" when dest is a topic
	id      string
	payload []byte

	// Under Client.mu:
	dest   string         // routing key
	via    *link          // where it was last sent
	moved  bool           // the last choose picked another dest
	nacked map[*link]bool // the proxies that NACKed it for dest

	acked chan struct{} // closed by the first ACK (or reply)
	ackOK sync.Once
	reply chan inbound  // the REPLY, cap 1
	redo  chan struct{} // cap 1: its link or server went away
	nack  chan struct{} // cap 1: a proxy could not deliver it to dest
	// Under Client.mu: its server deregistered after acknowledging it
	// (a CALL waits a while for the reply before sending it elsewhere).
	gone bool
}

func (p *pending) ack() { p.ackOK.Do(func() { close(p.acked) }) }

// NewClient starts a client. It returns once the registry has been listed:
// proxies and servers registered before are known then. It fails, naming
// the registry, when ctx ends first, or after StartTimeout when ctx has no
// deadline.
func NewClient(ctx context.Context, cfg ClientConfig) (*Client, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	c := &Client{
		cfg:     cfg,
		log:     cfg.Logger,
		id:      cfg.Host + "/" + uuid.NewString(),
		ids:     newIDs(),
		pending: make(map[string]*pending),
		suspect: make(map[string]time.Time),
	}
	c.links = newLinks(transport.Options{Identity: []byte(c.id), HWM: cfg.HWM, Security: cfg.Security, Logger: c.log,
		Heartbeat: cfg.Heartbeat, HeartbeatTimeout: cfg.HeartbeatTimeout}, c.log, c.recv, c.linkDown)
	c.disc = newDiscovery(c.log, c.setProxies, c.targetGone)
	wctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	c.disc.start(wctx, cfg.Registry, true)
	sctx, cancel := startContext(ctx, cfg.StartTimeout)
	defer cancel()
	if err := c.disc.waitSynced(sctx); err != nil {
		c.Close()
		return nil, notListed(cfg.Registry, err)
	}
	return c, nil
}

// Identity is the client DEALER's routing identity, host/uuid.
func (c *Client) Identity() string { return c.id }

// Stats are the client's counters.
func (c *Client) Stats() *ClientStats { return &c.stats }

// Close stops following the registry and closes every connection, after
// writing what is queued on it (up to a second per connection): a Cast
// that returned before Close has left. What waits for a reply or an ACK
// returns ErrClosed. Safe to call twice.
func (c *Client) Close() error {
	c.once.Do(func() {
		c.closed.Store(true)
		c.cancel()
		c.disc.wg.Wait()
		c.links.close()
		c.mu.Lock()
		for _, p := range c.pending {
			signal(p.redo)
		}
		c.mu.Unlock()
	})
	return nil
}

// setProxies keeps a link to every central proxy's frontend.
func (c *Client) setProxies(recs map[string]registry.Record) {
	c.links.follow(recs, clientAddr)
}

// linkDown resends at once what waits through l: when its connection
// ended, everything (a reply queued in a dead proxy is lost); when its
// proxy only left the registry (a draining proxy, which still routes), what
// waits for its ACK: a CALL already acknowledged gets its reply through
// the draining proxy, or is resent when the connection ends.
func (c *Client) linkDown(l *link, closed bool) {
	if !c.cfg.Acks {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.pending {
		if p.via == l && (closed || !isClosed(p.acked)) {
			signal(p.redo)
		}
	}
}

// targetGone resends what waits on a server that deregistered (or whose
// registration was superseded by a newer one of the same server), and
// forgets that it was suspect (its identity will not come back). What it
// did not acknowledge goes elsewhere at once. A CALL it acknowledged is
// given one more ACK timeout for its reply first: a server that stops
// cleanly answers what it acknowledged before it deregisters, and the
// reply may still be on its way; one that died never answers, and the
// CALL goes to another server after that wait.
func (c *Client) targetGone(identity string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.suspect, identity)
	if !c.cfg.Acks {
		return
	}
	for _, p := range c.pending {
		if p.dest == identity && p.target != "" {
			p.gone = isClosed(p.acked)
			signal(p.redo)
		}
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// recv takes the ACKs and replies a link received.
func (c *Client) recv(l *link, b *transport.Batch) {
	defer b.Release()
	for _, m := range b.Msgs {
		in, err := parseDirect(m)
		if err != nil || (in.typ != transport.TypeAck && in.typ != transport.TypeReply && in.typ != transport.TypeNack) {
			c.stats.Malformed.Add(1)
			c.log.Debug("message dropped", "err", err, "type", in.typ)
			continue
		}
		c.mu.Lock()
		p := c.pending[in.msgID]
		if in.typ == transport.TypeNack {
			// in.peer is the identity the proxy could not reach.
			if p != nil && p.dest == in.peer {
				if p.nacked == nil {
					p.nacked = make(map[*link]bool)
				}
				p.nacked[l] = true
			}
			c.mu.Unlock()
			if p == nil {
				c.stats.Late.Add(1)
				continue
			}
			c.stats.Nacks.Add(1)
			signal(p.nack)
			continue
		}
		delete(c.suspect, in.peer)
		c.mu.Unlock()
		if p == nil {
			c.stats.Late.Add(1)
			continue
		}
		p.ack()
		if in.typ == transport.TypeAck {
			c.stats.Acks.Add(1)
			continue
		}
		select {
		case p.reply <- in:
			c.stats.Replies.Add(1)
		default: // a second reply for a resent call
			c.stats.Late.Add(1)
		}
	}
}

// bound gives ctx the client's CallTimeout when it has no deadline, so
// that no send waits forever.
func (c *Client) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, c.cfg.CallTimeout)
}

// Call sends method(args) to one server of target and returns the result
// as JSON. A failure raised by the server is a *RemoteError. Call returns
// when ctx ends (ErrTimeout at its deadline, context.Canceled when it is
// cancelled), or after ClientConfig.CallTimeout when ctx has no deadline:
// it never hangs.
func (c *Client) Call(ctx context.Context, target Target, method string, args any) (json.RawMessage, error) {
	ctx, cancel := c.bound(ctx)
	defer cancel()
	p, err := c.newDirect(transport.TypeCall, target, method, args)
	if err != nil {
		return nil, err
	}
	in, err := c.exchange(ctx, p)
	if err != nil {
		return nil, err
	}
	result, failure, err := decodeReply(in.payload)
	if err != nil {
		c.stats.Malformed.Add(1)
		return nil, err
	}
	if failure != nil {
		return nil, failure
	}
	return result, nil
}

// Cast sends method(args) to one server of target. Without acks it
// returns once the message is queued to a proxy (at most once); with acks
// it returns when a server has acknowledged it (ErrNoAck after the last
// retry). It ends with ctx, or after ClientConfig.CallTimeout when ctx has
// no deadline.
func (c *Client) Cast(ctx context.Context, target Target, method string, args any) error {
	payload, id, flags, err := c.encodeDirect(transport.TypeCast, target, method, args)
	if err != nil {
		return err
	}
	if flags == 0 && c.sendFirst(transport.TypeCast, target.key(), "", id, payload) != nil {
		return nil // nothing waits on it: no pending
	}
	p := c.newPending(transport.TypeCast, target, payload, id, flags)
	ctx, cancel := c.bound(ctx)
	defer cancel()
	_, err = c.exchange(ctx, p)
	return err
}

// sendFirst is the first send of what nothing waits on (a CAST without
// acks to targetKey, or a fanout to dest) when it needs no wait: its
// server known, a proxy up with room. It returns the link it went
// through; nil (nothing sent) when the caller must go the way that waits,
// with its context bounded: a context with a timer per message was a
// tenth of a cast's cost.
func (c *Client) sendFirst(typ transport.MsgType, targetKey, dest, id string, payload []byte) *link {
	if c.closed.Load() {
		return nil
	}
	if targetKey != "" {
		if dest = c.disc.pick(targetKey, c.isSuspect); dest == "" {
			return nil
		}
	}
	var h [5][]byte
	t := [1][]byte{payload}
	l := c.links.send(nil, headInto(&h, typ, dest, id), t[:])
	if l != nil {
		c.stats.Sent.Add(1)
	}
	return l
}

// Fanout sends method(args) to every server of topic, through the
// proxies' publishers. It returns once the message is queued to a proxy:
// at most once, whatever the acks setting. It ends with ctx, or after
// ClientConfig.CallTimeout when ctx has no deadline.
func (c *Client) Fanout(ctx context.Context, topic string, method string, args any) error {
	if err := (Target{Topic: topic}).validate(); err != nil {
		return err
	}
	payload, err := encodeRequestRoom(method, args, idLen)
	if err != nil {
		return err
	}
	id := c.ids.nextAfter(payload, 0)
	return c.publish(ctx, transport.TypeCastFanout, topic, id, payload[:len(payload):len(payload)])
}

// Notify sends a notification of eventType with payload to the listeners
// of topic at priority ("info", "error", ...), with routing key
// topic.priority, as oslo.messaging's notifier does. At most once. It ends
// with ctx, or after ClientConfig.CallTimeout when ctx has no deadline.
func (c *Client) Notify(ctx context.Context, topic, priority, eventType string, payload any) error {
	if err := (Target{Topic: topic}).validate(); err != nil {
		return err
	}
	if priority == "" || strings.ContainsAny(priority, "./\x00") {
		return fmt.Errorf("%w: priority %q", ErrBadTarget, priority)
	}
	body, err := oslo.PyJSON(payload)
	if err != nil {
		return fmt.Errorf("%w: payload: %w", ErrBadTarget, err)
	}
	msg, err := encodeNotification(Notification{
		MessageID: uuid.NewString(), PublisherID: c.cfg.PublisherID, EventType: eventType,
		Priority: strings.ToUpper(priority), Payload: body, Timestamp: timestamp(time.Now()),
	})
	if err != nil {
		return err
	}
	return c.publish(ctx, transport.TypeNotify, topic+"."+strings.ToLower(priority), c.ids.next(0), msg)
}

// publish sends a fanout message once through one proxy.
func (c *Client) publish(ctx context.Context, typ transport.MsgType, key, id string, payload []byte) error {
	if c.sendFirst(typ, "", key, id, payload) != nil {
		return nil
	}
	p := &pending{typ: typ, id: id, payload: payload, dest: key}
	ctx, cancel := c.bound(ctx)
	defer cancel()
	return c.transmit(ctx, p, true)
}

func (c *Client) newDirect(typ transport.MsgType, target Target, method string, args any) (*pending, error) {
	payload, id, flags, err := c.encodeDirect(typ, target, method, args)
	if err != nil {
		return nil, err
	}
	return c.newPending(typ, target, payload, id, flags), nil
}

// encodeDirect makes a CALL's or CAST's payload and message id, in one
// allocation, and the flags of the id.
func (c *Client) encodeDirect(typ transport.MsgType, target Target, method string, args any) (payload []byte, id string, flags byte, err error) {
	if err := target.validate(); err != nil {
		return nil, "", 0, err
	}
	if payload, err = encodeRequestRoom(method, args, idLen); err != nil {
		return nil, "", 0, err
	}
	// The id asks what this client will wait for: an ACK with acks, and a
	// NACK from a proxy that cannot deliver it whenever something waits
	// (a CAST without acks waits for nothing).
	if c.cfg.Acks {
		flags |= idAck
	}
	if typ == transport.TypeCall || c.cfg.Acks {
		flags |= idNack
	}
	id = c.ids.nextAfter(payload, flags)
	// Capped: nothing appended to the payload can reach its id's bytes.
	return payload[:len(payload):len(payload)], id, flags, nil
}

func (c *Client) newPending(typ transport.MsgType, target Target, payload []byte, id string, flags byte) *pending {
	p := &pending{typ: typ, target: target.key(), id: id, payload: payload}
	if flags != 0 { // else nothing waits (exchange)
		p.acked, p.reply = make(chan struct{}), make(chan inbound, 1)
		p.redo, p.nack = make(chan struct{}, 1), make(chan struct{}, 1)
	}
	return p
}

// exchange sends a CALL or CAST and waits for what it needs: the reply of
// a CALL, the ACK of a CAST with acks. With acks, it sends again through
// another proxy when the ACK is late (to the same server, while it is
// registered) or at once when the proxy or the server goes away. A NACK
// (its server was not connected to the proxy) sends it at once to another
// server of the target, if there is one. Every send after the first is
// an attempt: a resend that finds no proxy or no server is tried again
// later, never turned into an error that would make the caller send the
// message again as a new one; after Retries attempts, ErrNoAck.
func (c *Client) exchange(ctx context.Context, p *pending) (inbound, error) {
	if c.closed.Load() {
		return inbound{}, ErrClosed
	}
	if p.acked == nil {
		// A CAST without acks (newDirect made nothing to wait on): at
		// most once, nothing will answer.
		if err := c.choose(ctx, p, false); err != nil {
			return inbound{}, err
		}
		return inbound{}, c.transmit(ctx, p, true)
	}
	c.mu.Lock()
	c.pending[p.id] = p
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, p.id)
		c.mu.Unlock()
	}()

	if err := c.choose(ctx, p, false); err != nil {
		return inbound{}, err
	}
	if err := c.transmit(ctx, p, true); err != nil {
		return inbound{}, err
	}
	acked := p.acked
	attempt := 0
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var late <-chan time.Time
	arm := func(d time.Duration) {
		timer.Reset(d)
		late = timer.C
	}
	// With acks, a message is sent again to its server every probeEvery
	// while it waits for its ACK or, for a CALL, its reply: a live server
	// ACKs the duplicate and does not run it again; a dead one (killed -9,
	// its registration not yet expired) is NACKed by the proxies, and the
	// message goes to another server within probeEvery, instead of after
	// the ACK timeout or, for an acknowledged CALL, when the registration
	// expires. A probe is not an attempt.
	probeEvery := max(c.cfg.AckTimeout/2, 50*time.Millisecond)
	probeTimer := time.NewTimer(probeEvery)
	defer probeTimer.Stop()
	var probe <-chan time.Time
	if c.cfg.Acks {
		probe = probeTimer.C
	}
	if c.cfg.Acks {
		arm(backoffFor(c.cfg.AckTimeout, c.cfg.AckMultiplier, 0))
	}
	var lastErr error // why the last resend did not go out
	for {
		other := false // resend to another server than dest
		select {
		case in := <-p.reply:
			return in, nil
		case <-acked:
			if p.typ == transport.TypeCast {
				return inbound{}, nil
			}
			acked, late = nil, nil // a CALL waits on for its reply, still probing
			continue
		case <-probe:
			probeTimer.Reset(probeEvery)
			c.mu.Lock()
			clear(p.nacked)
			dest := p.dest
			c.mu.Unlock()
			if c.disc.registered(dest) && c.transmit(ctx, p, false) == nil {
				c.stats.Probes.Add(1)
			}
			continue
		case <-late:
			late = nil
			c.mu.Lock()
			gone := p.gone
			p.gone = false
			c.mu.Unlock()
			if !gone { // the ACK is late; else the reply did not come after its server left
				c.markSuspect(p)
				if attempt++; attempt > c.cfg.Retries {
					return inbound{}, c.noAck(p, attempt, lastErr)
				}
				c.stats.Retries.Add(1)
			} else {
				c.stats.Resent.Add(1)
			}
		case <-p.redo:
			if c.closed.Load() {
				return inbound{}, ErrClosed
			}
			c.mu.Lock()
			gone := p.gone
			c.mu.Unlock()
			if gone {
				// Acknowledged by a server that has left: its reply may be
				// on its way. Wait one ACK timeout for it, then resend.
				arm(c.cfg.AckTimeout)
				continue
			}
			c.stats.Resent.Add(1)
		case <-p.nack:
			// Not delivered: its server is not connected to that proxy.
			// Through a proxy that has not said so it may be (it may be
			// connecting to the other): the same server is tried there
			// first, which is not an attempt. Once every proxy has NACKed
			// it, the server is gone: another server of the target, if
			// there is one, gets it at once (an attempt); else the ACK
			// timer (or, without acks, one ACK timeout) says when to try
			// again.
			if c.sendElsewhere(p) {
				continue
			}
			c.markSuspect(p)
			if err := c.choose(ctx, p, true); err != nil || !c.fresh(p) {
				lastErr = fmt.Errorf("%w: %s: not connected to the proxy", ErrNoServer, p.target)
				if late == nil {
					arm(backoffFor(c.cfg.AckTimeout, c.cfg.AckMultiplier, attempt))
				}
				continue
			}
			if attempt++; attempt > c.cfg.Retries {
				return inbound{}, c.noAck(p, attempt, lastErr)
			}
			other = true
		case <-ctx.Done():
			return inbound{}, c.ctxErr(ctx, p)
		}
		var err error
		if !other { // a NACK chose already
			err = c.choose(ctx, p, false)
		}
		if err == nil {
			err = c.transmit(ctx, p, false)
		}
		lastErr = err
		if c.cfg.Acks && acked != nil || lastErr != nil {
			arm(backoffFor(c.cfg.AckTimeout, c.cfg.AckMultiplier, attempt))
		}
	}
}

// noAck is the error of a message whose every attempt went unanswered.
func (c *Client) noAck(p *pending, attempt int, last error) error {
	if last != nil {
		return fmt.Errorf("%w: %s %s to %s: no ACK after %d attempts; last: %w", ErrNoAck, p.typ, p.id, p.target, attempt, last)
	}
	return fmt.Errorf("%w: %s %s to %s: no ACK after %d attempts", ErrNoAck, p.typ, p.id, p.target, attempt)
}

// ctxErr is the error of a message whose ctx ended first: ErrTimeout at
// its deadline, the context's own error when the caller cancelled it.
func (c *Client) ctxErr(ctx context.Context, p *pending) error {
	what := "reply"
	if p.typ == transport.TypeCast {
		what = "ACK"
	}
	if errors.Is(ctx.Err(), context.Canceled) {
		return fmt.Errorf("%s %s to %s: cancelled before its %s: %w", p.typ, p.id, p.target, what, context.Canceled)
	}
	return fmt.Errorf("%w: %s %s to %s: no %s: %w", ErrTimeout, p.typ, p.id, p.target, what, context.Cause(ctx))
}

// choose picks the destination identity: the same as before while it is
// registered (so that the server's memory of message ids makes a resend
// harmless), unless other is set (a NACK: the message did not reach it),
// else the next one registered for the target, avoiding those that missed
// an ACK lately.
func (c *Client) choose(ctx context.Context, p *pending, other bool) error {
	c.mu.Lock()
	dest := p.dest
	p.moved = false
	c.mu.Unlock()
	if dest != "" && !other && c.disc.registered(dest) {
		return nil
	}
	if err := c.disc.lookup(ctx, p.target); err != nil {
		return err
	}
	id := c.disc.pick(p.target, c.isSuspect)
	if id == "" {
		return fmt.Errorf("%w: %s", ErrNoServer, strings.Replace(p.target, "/", ".", 1))
	}
	c.mu.Lock()
	p.moved = id != dest
	p.dest = id
	if p.moved {
		clear(p.nacked)
	}
	c.mu.Unlock()
	return nil
}

// sendElsewhere sends p to its destination again through an up proxy
// that has not NACKed it; false when there is none.
func (c *Client) sendElsewhere(p *pending) bool {
	c.mu.Lock()
	dest := p.dest
	nacked := maps.Clone(p.nacked)
	c.mu.Unlock()
	l := c.links.sendExcept(func(l *link) bool { return nacked[l] }, head(p.typ, dest, p.id), [][]byte{p.payload})
	if l == nil {
		return false
	}
	c.stats.Sent.Add(1)
	c.mu.Lock()
	p.via = l
	c.mu.Unlock()
	return true
}

// fresh reports whether the last choose moved p to another server.
func (c *Client) fresh(p *pending) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return p.moved
}

// suspectFor is how long an identity that missed an ACK is avoided.
const suspectFor = 10 * time.Second

func (c *Client) markSuspect(p *pending) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.suspect[p.dest] = time.Now().Add(suspectFor)
}

func (c *Client) isSuspect(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	until, ok := c.suspect[id]
	if ok && time.Now().After(until) {
		delete(c.suspect, id)
		return false
	}
	return ok
}

// roomPoll bounds the wait between two looks for room when every
// connected proxy's link is at its high-water mark.
const roomPoll = 20 * time.Millisecond

// transmit queues p on a proxy link other than the one it last went
// through. With wait (a first send), it waits within ctx for a proxy to
// connect when none is up, and for room when every link is full;
// without (a resend, which must not keep the caller from its reply), it
// tries once.
func (c *Client) transmit(ctx context.Context, p *pending, wait bool) error {
	pause := time.Millisecond
	for {
		if c.closed.Load() {
			return ErrClosed
		}
		c.mu.Lock()
		dest, avoid := p.dest, p.via
		c.mu.Unlock()
		if l := c.links.send(avoid, head(p.typ, dest, p.id), [][]byte{p.payload}); l != nil {
			c.stats.Sent.Add(1)
			c.mu.Lock()
			p.via = l
			c.mu.Unlock()
			return nil
		}
		if _, up := c.links.count(); up > 0 {
			if !wait {
				return fmt.Errorf("%w: every connected proxy is at its high-water mark", ErrBusy)
			}
			// Full: wait for room, within ctx.
			select {
			case <-ctx.Done():
				return c.sendErr(ctx, fmt.Errorf("%w: every connected proxy is at its high-water mark", ErrBusy))
			case <-time.After(pause):
			}
			pause = min(2*pause, roomPoll)
			continue
		}
		if !wait {
			return fmt.Errorf("%w connected", ErrNoProxy)
		}
		if !c.links.waitUp(ctx, c.disc.synced) {
			if c.closed.Load() {
				return ErrClosed
			}
			if ctx.Err() != nil {
				return c.sendErr(ctx, fmt.Errorf("%w connected", ErrNoProxy))
			}
			return fmt.Errorf("%w registered", ErrNoProxy)
		}
	}
}

// sendErr is the error of a send whose ctx ended while it waited for a
// proxy or for room: ErrTimeout (or context.Canceled) wrapping why.
func (c *Client) sendErr(ctx context.Context, why error) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return fmt.Errorf("cancelled: %w: %w", why, context.Canceled)
	}
	return fmt.Errorf("%w: %w: %w", ErrTimeout, why, context.Cause(ctx))
}
