package transport

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"

	"github.com/go-zeromq/zmq4"
)

// The ROUTER socket (peers by identity: Send finds one, recv hands a
// connection's batches on) and, at the end, the v1.0 envelope that a
// proxy's ROUTER reads and sends on (ParseEnvelope, Batch.Parse and
// Batch.Envelope, the heads of what it sends).

// maxIdentity is the longest identity ZMTP allows (RFC 23: a routing id
// is 1 to 255 bytes). A peer that announces a longer one is refused, and
// a message to a longer one dropped, as libzmq does.
const maxIdentity = 255

// Router is a binding ROUTER socket: peers keyed by identity, one bounded
// queue and writer each. Inbound batches carry the sender's identity in
// Batch.Peer.
type Router struct {
	s *socket

	mu     sync.RWMutex
	peers  map[string]*peer
	nextID uint32
}

// NewRouter makes a ROUTER socket; Bind starts it.
func NewRouter(opts Options) *Router {
	r := &Router{peers: make(map[string]*peer), nextID: rand.Uint32()}
	r.s = newSocket(zmq4.Router, opts, r)
	return r
}

// Bind listens on endpoint (tcp://host:port; port 0 = random).
func (r *Router) Bind(endpoint string) error { return r.s.bind(endpoint) }

// Addr is the bound endpoint, tcp://host:port.
func (r *Router) Addr() string { return r.s.addr() }

// StopAccepting closes the listener (a draining proxy takes no new peer);
// the connected peers go on until Close. Called before Bind, Bind binds
// and reports the address but accepts nothing.
func (r *Router) StopAccepting() { r.s.stopAccepting() }

// Close closes every connection and waits for the socket's goroutines.
func (r *Router) Close() error { return r.s.close() }

// Stats are the socket's counters.
func (r *Router) Stats() *Stats { return r.s.opts.Stats }

// Identity is the socket's own identity.
func (r *Router) Identity() []byte { return r.s.opts.Identity }

// Send queues the message head+tail to the peer with identity id. A
// message to an unknown identity or to a peer at its high-water mark is
// dropped and counted; Send never blocks.
func (r *Router) Send(id []byte, head, tail [][]byte) bool { return r.send(id, head, tail, false) }

// SendNow is Send for the last message of a burst: when the peer's queue
// is empty and its writer idle, the message is written at once, on the
// caller's goroutine, with one non-blocking write.
func (r *Router) SendNow(id []byte, head, tail [][]byte) bool { return r.send(id, head, tail, true) }

func (r *Router) send(id []byte, head, tail [][]byte, now bool) bool {
	st := r.s.opts.Stats
	if len(id) > maxIdentity {
		st.DroppedIdentity.Add(1)
		return false
	}
	r.mu.RLock()
	p := r.peers[string(id)]
	r.mu.RUnlock()
	if p == nil {
		st.DroppedUnknownIdentity.Add(1)
		return false
	}
	if !p.sendMsg(head, tail, now) {
		st.DroppedHWM.Add(1)
		return false
	}
	st.Sent.Add(1)
	return true
}

// Connected reports whether a peer with identity id is connected.
func (r *Router) Connected(id []byte) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.peers[string(id)] != nil
}

// attach keys the peer by the identity it announced, or a generated one
// (libzmq's form: a zero byte and a 32-bit counter). Like libzmq without
// ROUTER_HANDOVER, a second connection with an identity in use is refused.
func (r *Router) attach(p *peer, meta zmq4.Metadata) error {
	id := []byte(meta["Identity"])
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(id) > 0 && id[0] == 0 {
		return fmt.Errorf("%w: identities starting with a zero byte are reserved", ErrDuplicateIdentity)
	}
	if len(id) == 0 {
		for {
			r.nextID++
			id = binary.BigEndian.AppendUint32([]byte{0}, r.nextID)
			if r.peers[string(id)] == nil {
				break
			}
		}
	}
	p.id = id
	if r.peers[string(id)] != nil {
		return ErrDuplicateIdentity
	}
	r.peers[string(id)] = p
	return nil
}

func (r *Router) detach(p *peer) {
	r.mu.Lock()
	if r.peers[string(p.id)] == p {
		delete(r.peers, string(p.id))
	}
	r.mu.Unlock()
}

func (r *Router) recv(_ *peer, b *Batch) {
	if r.s.opts.OnBatch == nil {
		b.Release()
		return
	}
	r.s.opts.OnBatch(b)
}

// ---- The v1.0 envelope: what a proxy's ROUTER reads, and sends on ----

// MsgType is an envelope's message type.
type MsgType uint8

// Message types of the v1.0 wire protocol.
const (
	TypeCall       MsgType = 1
	TypeCast       MsgType = 2
	TypeCastFanout MsgType = 3
	TypeNotify     MsgType = 4
	TypeReply      MsgType = 5
	TypeAck        MsgType = 6
	// TypeNack is this proxy's own: sent back to a sender that asked for
	// it, for a direct message whose routing key is not connected here
	// (docs/protocol.md). Proxies never route it; a peer that sends one
	// sends a malformed message.
	TypeNack MsgType = 7
)

// IsFanout: fanout types go out on the PUB, the others to a ROUTER peer.
func (t MsgType) IsFanout() bool { return t == TypeCastFanout || t == TypeNotify }

func (t MsgType) String() string {
	switch t {
	case TypeCall:
		return "CALL"
	case TypeCast:
		return "CAST"
	case TypeCastFanout:
		return "CAST_FANOUT"
	case TypeNotify:
		return "NOTIFY"
	case TypeReply:
		return "REPLY"
	case TypeAck:
		return "ACK"
	case TypeNack:
		return "NACK"
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Version10 is the message version this proxy speaks.
const Version10 = "1.0"

// ackType and nackType are the type frames of the ACKs and NACKs the
// proxy sends.
var (
	ackType  = []byte("6")
	nackType = []byte("7")
)

// Envelope is a v1.0 message as a proxy ROUTER receives it: the sender's
// identity, then ["", version, type, routing_key, message_id, payload...].
// Its fields alias the received frames.
type Envelope struct {
	ReplyID    []byte // the sender's identity
	Version    []byte
	TypeFrame  []byte // the type as sent, forwarded byte for byte
	Type       MsgType
	RoutingKey []byte
	MessageID  []byte
	Payload    [][]byte
}

// ParseEnvelope validates a message a ROUTER received from replyID. The
// frames are what the peer's DEALER sent; with the identity in front there
// must be at least 6. A non-empty delimiter, a bad type or too few frames
// is ErrMalformed; a version we do not speak is ErrUnknownVersion.
func ParseEnvelope(replyID []byte, frames Msg) (Envelope, error) {
	if len(frames) < 5 {
		return Envelope{}, fmt.Errorf("%w: %d frames, want at least 6 with the identity", ErrMalformed, len(frames)+1)
	}
	if len(frames[0]) != 0 {
		return Envelope{}, fmt.Errorf("%w: delimiter frame is not empty", ErrMalformed)
	}
	switch string(frames[1]) {
	case Version10:
		return parseV10(replyID, frames)
	default:
		return Envelope{}, fmt.Errorf("%w: %q", ErrUnknownVersion, truncate(frames[1]))
	}
}

// Parse parses message i's envelope (ParseEnvelope) and keeps its type
// with the batch, so that the batch's other holders read the envelope
// back with Envelope instead of parsing it again: a proxy parses each
// message once, on the goroutine that read it, before it hands the batch
// on (handing on is what orders this write before their reads).
func (b *Batch) Parse(i int) (Envelope, error) {
	if len(b.types) != len(b.Msgs) {
		b.types = slices.Grow(b.types[:0], len(b.Msgs))[:len(b.Msgs)]
		clear(b.types)
	}
	env, err := ParseEnvelope(b.Peer, b.Msgs[i])
	if err != nil {
		b.types[i] = 0
		return env, err
	}
	b.types[i] = env.Type
	return env, nil
}

// Envelope is message i's envelope as Parse accepted it, rebuilt from its
// frames without checking them again. It reports false for a message
// Parse refused (dropped where it was read) or was not asked about.
func (b *Batch) Envelope(i int) (Envelope, bool) {
	if i >= len(b.types) || b.types[i] == 0 {
		return Envelope{}, false
	}
	m := b.Msgs[i]
	return Envelope{
		ReplyID:    b.Peer,
		Version:    m[1],
		TypeFrame:  m[2],
		Type:       b.types[i],
		RoutingKey: m[3],
		MessageID:  m[4],
		Payload:    m[5:],
	}, true
}

func parseV10(replyID []byte, frames Msg) (Envelope, error) {
	t, ok := parseType(frames[2])
	if !ok {
		return Envelope{}, fmt.Errorf("%w: unknown type %q", ErrMalformed, truncate(frames[2]))
	}
	return Envelope{
		ReplyID:    replyID,
		Version:    frames[1],
		TypeFrame:  frames[2],
		Type:       t,
		RoutingKey: frames[3],
		MessageID:  frames[4],
		Payload:    frames[5:],
	}, nil
}

// parseType reads the ASCII decimal type: one digit, 1 to 6.
func parseType(b []byte) (MsgType, bool) {
	if len(b) != 1 || b[0] < '1' || b[0] > '6' {
		return 0, false
	}
	return MsgType(b[0] - '0'), true
}

func truncate(b []byte) []byte {
	if len(b) > 32 {
		return b[:32]
	}
	return b
}

// DirectHead fills head with the envelope's onward frames for a direct
// type, to be sent to the peer named by RoutingKey:
// ["", version, reply_id, type, message_id] then Payload.
func (e *Envelope) DirectHead(head *[5][]byte) [][]byte {
	*head = [5][]byte{nil, e.Version, e.ReplyID, e.TypeFrame, e.MessageID}
	return head[:]
}

// FanoutHead fills head with the frames published for a fanout type:
// [routing_key, version, type, message_id] then Payload.
func (e *Envelope) FanoutHead(head *[5][]byte) [][]byte {
	*head = [5][]byte{e.RoutingKey, e.Version, e.TypeFrame, e.MessageID}
	return head[:4]
}

// AckHead fills head with the ACK the proxy sends back to ReplyID for a
// fanout message: ["", version, proxy_identity, "6", message_id].
func (e *Envelope) AckHead(head *[5][]byte, proxyID []byte) [][]byte {
	*head = [5][]byte{nil, e.Version, proxyID, ackType, e.MessageID}
	return head[:]
}

// Flags a sender asks for in its message id (docs/protocol.md, "Asking
// for ACKs and NACKs"): the id is a version 8 UUID, and the hex digit
// after the version holds them. oslo.messaging's ids are version 4 UUIDs,
// with no flags.
const (
	IDFlagAck  = 1 << 0 // the server ACKs this CALL or CAST
	IDFlagNack = 1 << 1 // a proxy that cannot deliver it says so (a NACK)
)

// IDFlags reads the flags of a message id; 0 for an id that is not a
// version 8 UUID.
func IDFlags[T string | []byte](id T) byte {
	if len(id) != 36 || id[8] != '-' || id[13] != '-' || id[14] != '8' || id[18] != '-' || id[23] != '-' {
		return 0
	}
	switch c := id[15]; {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return 0
}

// WantsNack reports whether the sender asked to be told when this message
// cannot be delivered (IDFlagNack).
func (e *Envelope) WantsNack() bool { return IDFlags(e.MessageID)&IDFlagNack != 0 }

// NackHead fills head with the NACK the proxy sends back to ReplyID for a
// direct message it could not deliver: ["", version, routing_key, "7",
// message_id], the routing key where an ACK has the acknowledging peer.
func (e *Envelope) NackHead(head *[5][]byte) [][]byte {
	*head = [5][]byte{nil, e.Version, e.RoutingKey, nackType, e.MessageID}
	return head[:]
}
