package actors

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/zmq-proxy/zmq-proxy/internal/addr"
	"github.com/zmq-proxy/zmq-proxy/transport"
	"github.com/zmq-proxy/zmq-proxy/transport/security"
)

// Kind is the kind of proxy a process runs.
type Kind int

const (
	// KindDoubleRouter is a central proxy with a frontend ROUTER (clients), a
	// backend ROUTER (servers) and a PUB publisher.
	KindDoubleRouter Kind = iota
	// KindSingleRouter is a central proxy with one ROUTER for clients and
	// servers alike, and a PUB publisher.
	KindSingleRouter
	// KindLocalPublisher is a node-local SUB->PUB republisher.
	KindLocalPublisher
)

func (k Kind) String() string {
	switch k {
	case KindDoubleRouter:
		return "double-router"
	case KindSingleRouter:
		return "single-router"
	case KindLocalPublisher:
		return "local"
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// ChooseKind applies oslo.messaging's rule, kept exactly: a local publisher if
// localPublisher; else a single-router proxy if a frontend port is given and
// no backend port; else a double-router proxy.
func ChooseKind(localPublisher bool, frontendPort, backendPort int) Kind {
	switch {
	case localPublisher:
		return KindLocalPublisher
	case frontendPort != 0 && backendPort == 0:
		return KindSingleRouter
	default:
		return KindDoubleRouter
	}
}

// Defaults.
const (
	DefaultHWM            = 1000
	DefaultHWMBytes       = 16 << 20 // 16 MiB
	DefaultMaxMessageSize = 16 << 20 // 16 MiB
	DefaultMaxFrames      = 1024     // an oslo.messaging message has 6 to 8
	// MaxMessageSizeLimit caps MaxMessageSize (and HWMBytes): a reader
	// holds up to twice that for a message a peer sends.
	MaxMessageSizeLimit = 1 << 30
)

// Config configures a Proxy. The zero value of a field means its default.
type Config struct {
	Kind Kind
	// Host is the address to bind to (an IP or a host name); "" or "*"
	// binds every interface.
	Host          string
	FrontendPort  int // 0 = random
	BackendPort   int // 0 = random; unused by a single-router proxy
	PublisherPort int // 0 = random
	// AckPubSub makes the frontend answer each published fanout message
	// with an ACK.
	AckPubSub bool
	// PubSub is use_pub_sub: publish fanout types, route them (router-only
	// mode, no PUB), or decide per message (the default).
	PubSub PubSub
	// HWM is the per-peer outbound high-water mark, in messages.
	HWM int
	// HWMBytes is the per-peer outbound high-water mark, in bytes.
	HWMBytes int64
	// MaxConnections bounds the connections accepted at once, by all
	// sockets together; 0 = transport.DefaultMaxConnections().
	MaxConnections int
	// MaxHandshakes and MaxHandshakesPerSource bound the accepted
	// connections still in their handshake, in all and from one address
	// (transport.HandshakeLimit); 0 = transport.DefaultMaxHandshakes()
	// and transport.DefaultHandshakesPerSource.
	MaxHandshakes, MaxHandshakesPerSource int
	// MaxFrames bounds the frames of one inbound message; 0 = DefaultMaxFrames.
	MaxFrames int
	// MaxMessageSize bounds one inbound message (all frames), in bytes.
	MaxMessageSize int64
	// SubscribeOn lists the publishers a local publisher proxy subscribes
	// to ("host:port" or "tcp://host:port").
	SubscribeOn []string
	// MetricsAddr is where /metrics, /healthz and /readyz are served; "" = off.
	MetricsAddr string
	// AdminAddr is where the admin endpoint (POST /pause, POST /resume,
	// GET /stats) is served; "" = off. Unless AdminToken is set, it must
	// be a loopback address, and requests must name a loopback Host.
	AdminAddr string
	// AdminToken, when set, is required of every admin request as
	// "Authorization: Bearer TOKEN".
	AdminToken string
	// PprofAddr is where Go's profiles (/debug/pprof/) are served; "" = off.
	PprofAddr string
	// Registry says where and how the proxy registers itself.
	Registry RegistryConfig
	// Debug logs every message at debug level.
	Debug bool
	// Logger receives the proxy's logs; nil = slog.Default().
	Logger *slog.Logger

	// Security is the mechanism every bound socket (frontend, backend,
	// publisher) requires: a server side from transport/security (PLAIN
	// or CURVE); nil = none (NULL).
	Security security.Mechanism
	// SubscriberSecurity is the local publisher proxy's SUB's client side
	// towards the central publishers; nil = none.
	SubscriberSecurity security.Mechanism

	// restart is the socket actors' restart policy; zero = the defaults
	// (tests shorten it).
	restart restartPolicy
}

// restartPolicy bounds a socket actor's restarts: a backoff from minDelay
// doubling to maxDelay, at most maxRestarts within window.
type restartPolicy struct {
	minDelay, maxDelay time.Duration
	maxRestarts        int
	window             time.Duration
}

// Validate checks the configuration and fills in defaults.
func (c *Config) Validate() error {
	for _, p := range []struct {
		name string
		v    int
	}{{"frontend port", c.FrontendPort}, {"backend port", c.BackendPort}, {"publisher port", c.PublisherPort}} {
		if p.v < 0 || p.v > 65535 {
			return fmt.Errorf("%w: %s %d is not in 0..65535", ErrConfig, p.name, p.v)
		}
	}
	c.HWM = orDefault(c.HWM, DefaultHWM)
	c.HWMBytes = orDefault(c.HWMBytes, DefaultHWMBytes)
	c.MaxConnections = orDefault(c.MaxConnections, transport.DefaultMaxConnections())
	c.MaxHandshakes = orDefault(c.MaxHandshakes, transport.DefaultMaxHandshakes())
	c.MaxHandshakesPerSource = orDefault(c.MaxHandshakesPerSource, transport.DefaultHandshakesPerSource)
	c.MaxFrames = orDefault(c.MaxFrames, DefaultMaxFrames)
	c.MaxMessageSize = orDefault(c.MaxMessageSize, DefaultMaxMessageSize)
	switch {
	case c.HWM < 0:
		return fmt.Errorf("%w: high-water mark %d must be positive", ErrConfig, c.HWM)
	case c.HWMBytes < 256 || c.HWMBytes > MaxMessageSizeLimit:
		return fmt.Errorf("%w: high-water mark %d bytes is not in 256..%d", ErrConfig, c.HWMBytes, int64(MaxMessageSizeLimit))
	case c.MaxConnections < 0:
		return fmt.Errorf("%w: max connections %d must be positive", ErrConfig, c.MaxConnections)
	case c.MaxHandshakes < 0 || c.MaxHandshakesPerSource < 0:
		return fmt.Errorf("%w: max handshakes %d and per source %d must be positive", ErrConfig, c.MaxHandshakes, c.MaxHandshakesPerSource)
	case c.MaxFrames < 0:
		return fmt.Errorf("%w: max frames %d must be positive", ErrConfig, c.MaxFrames)
	case c.MaxMessageSize < 256 || c.MaxMessageSize > MaxMessageSizeLimit:
		return fmt.Errorf("%w: max message size %d is not in 256..%d bytes", ErrConfig, c.MaxMessageSize, int64(MaxMessageSizeLimit))
	}
	if c.Kind == KindLocalPublisher && c.PubSub == PubSubOff {
		return fmt.Errorf("%w: a local publisher proxy republishes fanout messages; use_pub_sub = false has none", ErrConfig)
	}
	if c.Kind == KindLocalPublisher && len(c.SubscribeOn) == 0 && c.Registry.Disabled {
		return fmt.Errorf("%w: a local publisher proxy needs subscribe_on or a registry to find the central publishers", ErrConfig)
	}
	if c.Security != nil && !c.Security.AsServer() {
		return fmt.Errorf("%w: the bound sockets' %s mechanism is a client side; they need a server side", ErrConfig, c.Security.Name())
	}
	if c.SubscriberSecurity != nil && (c.SubscriberSecurity.AsServer() || c.Kind != KindLocalPublisher) {
		return fmt.Errorf("%w: SubscriberSecurity is the client side of a local publisher proxy's SUB", ErrConfig)
	}
	if c.AdminAddr != "" && c.AdminToken == "" && !addr.Loopback(c.AdminAddr) {
		return fmt.Errorf("%w: admin address %s is not a loopback address and no admin token is set", ErrConfig, c.AdminAddr)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.restart == (restartPolicy{}) {
		c.restart = restartPolicy{minDelay: restartMinBackoff, maxDelay: restartMaxBackoff, maxRestarts: restartMax, window: restartWindow}
	}
	return nil
}

// orDefault is v, or def when v is zero.
func orDefault[T int | int64](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// RegistryConfig says where a proxy registers itself.
type RegistryConfig struct {
	// Disabled: no registration (oslo.messaging's zmq:// URL).
	Disabled bool
	// Endpoints of an external etcd cluster (host:port). Empty: use the
	// etcd answering on EmbeddedAddr, or start an embedded one there.
	Endpoints []string
	// EmbeddedAddr is where the local/embedded etcd listens for clients;
	// default 127.0.0.1:2379 (its peer port is the next one).
	EmbeddedAddr string
	// StateDir holds the embedded etcd's data (StateDir/etcd).
	StateDir string
	// Prefix of the registry keys; default "/zmq-proxy/".
	Prefix string
	// TTL of the registration lease; default 5 s.
	TTL time.Duration
	// Username, Password: etcd authentication.
	Username, Password string
	// CACert, Cert, Key: PEM files for TLS to etcd.
	CACert, Cert, Key string
	// Name is the host name put in the record; default os.Hostname().
	Name string
	// Redis, when its Addr is set, registers in oslo.messaging's Redis
	// matchmaker instead of etcd (TTL is then zmq_target_expire).
	Redis RedisConfig
}
