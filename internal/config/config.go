package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/ini.v1"

	"github.com/zmq-proxy/zmq-proxy/actors"
	"github.com/zmq-proxy/zmq-proxy/internal/addr"
	"github.com/zmq-proxy/zmq-proxy/registry"
	redismm "github.com/zmq-proxy/zmq-proxy/registry/redis"
	"github.com/zmq-proxy/zmq-proxy/transport"
	"github.com/zmq-proxy/zmq-proxy/transport/security"
)

// The configuration of a zmq-proxy process comes from four places; a later
// one overrides an earlier one, option by option:
//
//  1. the built-in defaults (the table below; a few are computed from the
//     environment, such as the state directory and the host name);
//  2. the INI file given with -c, in oslo.messaging's layout;
//  3. the environment variable of an option that has one (only the etcd
//     password, so that it need not be on the command line);
//  4. the flags given on the command line.
//
// Resolve does all of it, for the proxy or for the list command; config.log
// writes down where each value came from.

const ProgName = "zmq-proxy"

// Sections of oslo.messaging's INI file that zmq-proxy reads.
const (
	sectionProxy   = "zmq_proxy_opts"
	sectionZMQ     = "oslo_messaging_zmq"
	sectionRedis   = "matchmaker_redis"
	sectionDefault = "DEFAULT"
)

// sourceDefault is the origin of a value nobody set.
const sourceDefault = "default"

// precedence is the order of the sources, lowest first, as logged and as
// the usage text says it.
const precedence = "default < config file < environment < flag"

// defaultThreads is the proxy's GOMAXPROCS unless set: one, as libzmq
// proxies run one I/O thread. A forwarding proxy spends its time in
// syscalls; with more threads the scheduler often wakes another thread to
// hand a message on (a futex wake and a context switch). On 2 cores one
// thread was faster in every case but fanout to many subscribers
// (docs/deploy.md, "Threads").
const defaultThreads = 1

// envEtcdPassword may hold the etcd password instead of --etcd-password.
const envEtcdPassword = "ZMQ_PROXY_ETCD_PASSWORD"

// command is a command of the zmq-proxy binary: the proxy itself, or list.
type Command int

const (
	CmdProxy Command = 1 << iota // zmq-proxy [options]: run a proxy
	CmdList                      // zmq-proxy list [options]: print the registry
	CmdRPC                       // call, cast, fanout, notify: the rpc package for people
	CmdBench                     // bench: load through the running deployment
	CmdEcho                      // echo-server: a server of the rpc package for people

	CmdClients = CmdRPC | CmdBench | CmdEcho
	// CmdBoth is every command that reaches the registry (it was two).
	CmdBoth = CmdProxy | CmdList | CmdClients
)

// Defaults of the registry options.
const (
	defaultEtcdAddr    = "127.0.0.1:2379"
	DefaultListTimeout = "5s"
)

// Config is the resolved configuration of one command: the options of the
// table that the command takes (an option's cmds), in groups by the
// commands that use them. Each command builds its own small configuration
// from the groups it takes: the proxy an actors.Config (ProxyConfig),
// list a listing.Config, bench a bench.Config, the rpc commands an
// rpc.ClientConfig or ServerConfig (cmd/zmq-proxy).
type Config struct {
	Common
	RegistryOptions
	ProxyOptions
	OutputOptions
	ClientOptions
	BenchOptions

	cmd      Command            // the command the configuration is for
	settings map[string]setting // by option name
	ignored  []string           // INI keys that are not options, as "[section] key"
}

// Common is what every command takes.
type Common struct {
	ConfigFile string   // -c; "" when none
	LogFile    string   // -l; "" = stderr
	Debug      bool     // -d
	Args       []string // the positional arguments (the client commands)
}

// RegistryOptions say where the registry is: where the proxy registers
// itself, where list and the client commands look.
type RegistryOptions struct {
	URL          string      // as given ([DEFAULT] transport_url when url is not)
	Registry     RegistryURL // URL parsed
	TransportURL string      // [DEFAULT] transport_url, used when url is not set
	Name         string      // host name in the registry record
	StateDir     string      // the embedded etcd's data; "" = none found
	EtcdAddr     string      // host:port of the local etcd, used when URL is ""
	EtcdPrefix   string      // key prefix, "/.../"
	EtcdUser     string
	EtcdPassword string
	EtcdCACert   string // PEM file; "" = none
	EtcdCert     string // PEM file; "" = none; given with EtcdKey
	EtcdKey      string // PEM file; "" = none; given with EtcdCert
	// TargetExpire is the TTL of the registry record (etcd lease, Redis
	// keys), at least 1 s: the proxy's and echo-server's.
	TargetExpire time.Duration
	TargetUpdate time.Duration // how often Redis records are rewritten; 0 = not given (TTL/3)

	// [matchmaker_redis], for the parts a zmq+redis:// URL leaves out.
	RedisHost     string
	RedisPort     int
	RedisPassword string
}

// ProxyOptions are the proxy's own.
type ProxyOptions struct {
	Host           string // bind address; "" = every interface
	FrontendPort   int    // 0 = random
	BackendPort    int    // 0 = random
	PublisherPort  int    // 0 = random
	LocalPublisher bool
	AckPubSub      bool
	UsePubSub      actors.PubSub
	HWM            int
	HWMBytes       int64
	Threads        int // GOMAXPROCS of the proxy; 0 = one per CPU
	MaxConnections int
	MaxHandshakes  int
	MaxHsPerSource int
	MaxFrames      int
	MaxMessageSize int64
	MetricsAddr    string   // "" = off
	SubscribeOn    []string // tcp://host:port of each publisher to subscribe to

	AdminAddr      string        // --admin-addr; "" = off
	AdminTokenFile string        // --admin-token-file; "" = none
	AdminToken     string        // its token: never logged nor shown
	PprofAddr      string        // --pprof-addr; "" = off
	DrainTimeout   time.Duration // on SIGTERM, route on at most this long; 0 = no drain
	CheckConfig    bool          // --check-config: validate, print and exit

	// PLAIN and CURVE (security.go).
	Sec securityConfig

	Kind actors.Kind // by actors.ChooseKind, oslo.messaging's rule
}

// OutputOptions are list's, and the client commands' --json and --timeout.
type OutputOptions struct {
	Watch       bool
	JSON        bool
	ListTimeout time.Duration // list, and the clients' reply/ACK timeout
}

// ClientOptions are the rpc commands' (call, cast, fanout, notify,
// echo-server, bench).
type ClientOptions struct {
	Acks       bool
	AckTimeout time.Duration
	Retries    int
	Record     string // echo-server --record: the file every handler run is appended to; "" = none
	Node       string // echo-server: the node of the local publisher proxy; "" = --name
}

// BenchOptions are bench's.
type BenchOptions struct {
	BenchClients     int
	BenchOutstanding int
	BenchServers     int
	BenchTarget      string
	BenchSize        int
	BenchDuration    time.Duration
	BenchCount       int
	BenchCPUProfile  string
	BenchWindow      int
}

// origin is the kind of place a value came from.
type origin int

const (
	fromDefault origin = iota
	fromFile
	fromEnv
	fromFlag
)

// setting is the raw text of one option's value and where it came from.
type setting struct {
	raw    string
	from   string // sourceDefault, the INI file's path, "$VAR", or the flag as given
	origin origin
}

// option is one configurable value: its flags, its INI key, its default.
type option struct {
	name    string  // INI key (unless key is set), and the option's name in logs
	key     string  // INI key when it differs from name ("host" in [matchmaker_redis])
	cmds    Command // the commands that take it; 0 = the proxy only
	section string  // INI section; "" for a flag that is not in the file
	short   string  // short flag ("f", "lp"); "" when none
	long    string  // long flag; "" for a key that is only in the file
	env     string  // environment variable that overrides the file; "" = none
	boolean bool    // a flag that takes no value
	secret  bool    // never logged nor shown in an error
	hasURL  bool    // a URL whose password is never logged nor shown
	arg     string  // placeholder of the value in the usage text
	def     string  // default, parsed like any other value
	// defFunc, when not nil, computes the default instead of def, and
	// defHelp says in the usage text what it computes.
	defFunc func() (string, error)
	defHelp string
	help    string
	set     func(c *Config, v string) error
}

// iniKey is the option's key in its INI section.
func (o *option) iniKey() string {
	if o.key != "" {
		return o.key
	}
	return o.name
}

// takes reports whether cmd takes the option.
func (o *option) takes(cmd Command) bool {
	if o.cmds == 0 {
		return cmd == CmdProxy
	}
	return o.cmds&cmd != 0
}

// defaultValue is the option's default: def, or what defFunc computes.
func (o *option) defaultValue() (string, error) {
	if o.defFunc != nil {
		return o.defFunc()
	}
	return o.def, nil
}

// shown is raw as it may be logged or put in an error.
func (o *option) shown(raw string) string {
	if o.secret && raw != "" {
		return "(hidden)"
	}
	if o.hasURL {
		if u, err := url.Parse(raw); err == nil && u.User != nil {
			return u.Redacted()
		}
	}
	return raw
}

// optionNamed returns the option with the given name; it panics if there
// is none, which is a bug in this file.
func optionNamed(name string) *option {
	for i := range options {
		if options[i].name == name {
			return &options[i]
		}
	}
	panic("no option " + name)
}

// options lists every option, in the order of the usage text.
var options = []option{
	{
		name: "config_file", cmds: CmdBoth, short: "c", long: "config-file", arg: "FILE",
		help: "read options from the INI file FILE",
		set:  func(c *Config, v string) error { c.ConfigFile = v; return nil },
	},
	{
		name: "log_file", short: "l", long: "log-file", arg: "FILE",
		help: "append logs to FILE instead of stderr",
		set:  func(c *Config, v string) error { c.LogFile = v; return nil },
	},
	{
		name: "host", section: sectionProxy, short: "H", long: "host", arg: "HOST",
		help: "host name or IP address to bind; empty binds every interface (the name in the registry is --name)",
		set:  func(c *Config, v string) error { c.Host = v; return nil },
	},
	{
		name: "frontend_port", section: sectionProxy, short: "f", long: "frontend-port", arg: "PORT", def: "0",
		help: "front-end ROUTER port; 0 picks a free one",
		set:  func(c *Config, v string) (err error) { c.FrontendPort, err = parsePort(v); return err },
	},
	{
		name: "backend_port", section: sectionProxy, short: "b", long: "backend-port", arg: "PORT", def: "0",
		help: "back-end ROUTER port; 0 picks a free one",
		set:  func(c *Config, v string) (err error) { c.BackendPort, err = parsePort(v); return err },
	},
	{
		name: "publisher_port", section: sectionProxy, short: "p", long: "publisher-port", arg: "PORT", def: "0",
		help: "back-end PUBLISHER port; 0 picks a free one",
		set:  func(c *Config, v string) (err error) { c.PublisherPort, err = parsePort(v); return err },
	},
	{
		name: "local_publisher", section: sectionProxy, short: "lp", long: "local-publisher", boolean: true, def: "false",
		help: "run a node-local publisher proxy, not a central one",
		set:  func(c *Config, v string) (err error) { c.LocalPublisher, err = parseBool(v); return err },
	},
	{
		name: "ack_pub_sub", section: sectionProxy, short: "a", long: "ack-pub-sub", boolean: true, def: "false",
		help: "acknowledge PUB/SUB (fanout) messages",
		set:  func(c *Config, v string) (err error) { c.AckPubSub, err = parseBool(v); return err },
	},
	{
		name: "url", cmds: CmdBoth, section: sectionProxy, short: "u", long: "url", arg: "URL", hasURL: true,
		help: "registry " + registryURLForm + "; empty: [DEFAULT] transport_url, else the etcd on --etcd-addr; zmq://: none",
		set: func(c *Config, v string) (err error) {
			c.URL = v
			c.Registry, err = parseRegistryURL(v)
			return err
		},
	},
	{
		// oslo.messaging's own URL, read when url is not set.
		name: "transport_url", cmds: CmdBoth, section: sectionDefault, hasURL: true,
		set: func(c *Config, v string) error { c.TransportURL = v; return nil },
	},
	{
		name: "use_pub_sub", section: sectionZMQ, long: "use-pub-sub", boolean: true,
		help: "true: publish fanout and notify messages; false: route them, bind no PUB (router-only); unset: route those addressed to a connected identity, publish the others",
		set: func(c *Config, v string) error {
			if v == "" {
				c.UsePubSub = actors.PubSubAuto
				return nil
			}
			on, err := parseBool(v)
			c.UsePubSub = map[bool]actors.PubSub{true: actors.PubSubOn, false: actors.PubSubOff}[on]
			return err
		},
	},
	{
		name: "redis_host", key: "host", cmds: CmdBoth, section: sectionRedis, def: redismm.DefaultHost,
		set: func(c *Config, v string) error { c.RedisHost = v; return nil },
	},
	{
		name: "redis_port", key: "port", cmds: CmdBoth, section: sectionRedis, def: strconv.Itoa(redismm.DefaultPort),
		set: func(c *Config, v string) (err error) {
			if c.RedisPort, err = parsePort(v); err == nil && c.RedisPort == 0 {
				return errors.New("not in 1..65535")
			}
			return err
		},
	},
	{
		name: "redis_password", key: "password", cmds: CmdBoth, section: sectionRedis, secret: true,
		set: func(c *Config, v string) error { c.RedisPassword = v; return nil },
	},
	{
		name: "debug", cmds: CmdBoth, short: "d", long: "debug", boolean: true, def: "false",
		help: "log at debug level, every message included",
		set:  func(c *Config, v string) (err error) { c.Debug, err = parseBool(v); return err },
	},
	{
		name: "hwm", section: sectionProxy, long: "hwm", arg: "N", def: strconv.Itoa(actors.DefaultHWM),
		help: "per-peer outbound high-water mark, in messages",
		set:  func(c *Config, v string) (err error) { c.HWM, err = parseInt(v, 1); return err },
	},
	{
		name: "hwm_bytes", section: sectionProxy, long: "hwm-bytes", arg: "BYTES",
		def:  strconv.Itoa(actors.DefaultHWMBytes),
		help: "per-peer outbound high-water mark, in bytes of queued messages",
		set:  func(c *Config, v string) (err error) { c.HWMBytes, err = parseSize(v, 256); return err },
	},
	{
		name: "max_connections", section: sectionProxy, long: "max-connections", arg: "N",
		defFunc: func() (string, error) { return strconv.Itoa(transport.DefaultMaxConnections()), nil },
		defHelp: "the open-file limit less 64 and less the default --max-handshakes",
		help:    "peers connected at once past their handshake, all sockets together; more are refused and counted",
		set:     func(c *Config, v string) (err error) { c.MaxConnections, err = parseInt(v, 1); return err },
	},
	{
		name: "max_handshakes", section: sectionProxy, long: "max-handshakes", arg: "N",
		defFunc: func() (string, error) { return strconv.Itoa(transport.DefaultMaxHandshakes()), nil },
		defHelp: "an eighth of the open-file limit less 64, 16 to 1024",
		help:    "accepted connections in their handshake at once, all sockets together; past it the oldest is closed and counted once it has waited 250 ms, and a newcomer waits for a slot until then",
		set:     func(c *Config, v string) (err error) { c.MaxHandshakes, err = parseInt(v, 1); return err },
	},
	{
		name: "max_handshakes_per_source", section: sectionProxy, long: "max-handshakes-per-source", arg: "N",
		def:  strconv.Itoa(transport.DefaultHandshakesPerSource),
		help: "accepted connections in their handshake at once from one address; past it its oldest is closed and counted once it has waited 250 ms, and a newcomer waits for a slot until then",
		set:  func(c *Config, v string) (err error) { c.MaxHsPerSource, err = parseInt(v, 1); return err },
	},
	{
		name: "max_frames", section: sectionProxy, long: "max-frames", arg: "N", def: strconv.Itoa(actors.DefaultMaxFrames),
		help: "most frames in one inbound message; a peer that sends more is disconnected and counted",
		set:  func(c *Config, v string) (err error) { c.MaxFrames, err = parseInt(v, 1); return err },
	},
	{
		name: "threads", section: sectionProxy, long: "threads", arg: "N", env: "GOMAXPROCS",
		def: strconv.Itoa(defaultThreads),
		help: "threads that run the proxy's Go code at once (GOMAXPROCS); 0: one per CPU. One, like libzmq's one I/O thread, " +
			"was faster in every case measured but fanout to many subscribers (docs/deploy.md); raise it when the proxy keeps one CPU busy",
		set: func(c *Config, v string) (err error) { c.Threads, err = parseInt(v, 0); return err },
	},
	{
		name: "max_message_size", section: sectionProxy, long: "max-message-size", arg: "BYTES",
		def:  strconv.Itoa(actors.DefaultMaxMessageSize),
		help: "largest inbound message (all frames), in bytes",
		set:  func(c *Config, v string) (err error) { c.MaxMessageSize, err = parseSize(v, 256); return err },
	},
	{
		name: "metrics_addr", section: sectionProxy, long: "metrics-addr", arg: "HOST:PORT",
		help: "serve /metrics, /healthz and /readyz on HOST:PORT; empty: off",
		set:  func(c *Config, v string) (err error) { c.MetricsAddr, err = parseListenAddr(v); return err },
	},
	{
		name: "name", cmds: CmdProxy | CmdClients, section: sectionProxy, long: "name", arg: "NAME",
		defFunc: os.Hostname, defHelp: "this machine's host name",
		help: "host name of this proxy in its registry record (oslo.messaging's \"host\"); for clients and servers, the first part of their identity",
		set:  func(c *Config, v string) (err error) { c.Name, err = parseName(v); return err },
	},
	{
		name: "state_dir", section: sectionProxy, long: "state-dir", arg: "DIR",
		defFunc: defaultStateDir, defHelp: "$STATE_DIRECTORY, else $XDG_STATE_HOME/zmq-proxy, else ~/.local/state/zmq-proxy",
		help: "where an embedded etcd keeps its data",
		set:  func(c *Config, v string) (err error) { c.StateDir, err = parseDir(v); return err },
	},
	{
		name: "etcd_addr", cmds: CmdBoth, section: sectionProxy, long: "etcd-addr", arg: "HOST:PORT", def: defaultEtcdAddr,
		help: "with no URL, the etcd looked for there; the proxy starts an embedded one there if none answers",
		set:  func(c *Config, v string) (err error) { c.EtcdAddr, err = ParseDialAddr(v); return err },
	},
	{
		name: "etcd_prefix", cmds: CmdBoth, section: sectionProxy, long: "etcd-prefix", arg: "PREFIX", def: registry.DefaultPrefix,
		help: "prefix of the registry's etcd keys",
		set:  func(c *Config, v string) (err error) { c.EtcdPrefix, err = parsePrefix(v); return err },
	},
	{
		name: "etcd_user", cmds: CmdBoth, section: sectionProxy, long: "etcd-user", arg: "USER",
		help: "etcd user name, if etcd authenticates",
		set:  func(c *Config, v string) error { c.EtcdUser = v; return nil },
	},
	{
		name: "etcd_password", cmds: CmdBoth, section: sectionProxy, long: "etcd-password", arg: "PASSWORD",
		env: envEtcdPassword, secret: true,
		help: "etcd password; better in $" + envEtcdPassword + ", which overrides the file, not the flag",
		set:  func(c *Config, v string) error { c.EtcdPassword = v; return nil },
	},
	{
		name: "etcd_cacert", cmds: CmdBoth, section: sectionProxy, long: "etcd-cacert", arg: "FILE",
		help: "PEM file of the CA that signed etcd's certificate: TLS to etcd",
		set:  func(c *Config, v string) (err error) { c.EtcdCACert, err = parseFile(v); return err },
	},
	{
		name: "etcd_cert", cmds: CmdBoth, section: sectionProxy, long: "etcd-cert", arg: "FILE",
		help: "PEM client certificate for etcd; with --etcd-key",
		set:  func(c *Config, v string) (err error) { c.EtcdCert, err = parseFile(v); return err },
	},
	{
		name: "etcd_key", cmds: CmdBoth, section: sectionProxy, long: "etcd-key", arg: "FILE",
		help: "PEM key of the client certificate; with --etcd-cert",
		set:  func(c *Config, v string) (err error) { c.EtcdKey, err = parseFile(v); return err },
	},
	{
		name: "subscribe_on", section: sectionZMQ,
		set: func(c *Config, v string) (err error) { c.SubscribeOn, err = parseEndpoints(v); return err },
	},
	{
		name: "zmq_target_expire", cmds: CmdProxy | CmdClients, section: sectionZMQ, long: "target-expire", arg: "SECONDS",
		def:  strconv.Itoa(int(registry.DefaultTTL / time.Second)),
		help: "TTL of the registration's lease: a proxy (or an echo-server) that dies is gone from the registry within it",
		set: func(c *Config, v string) (err error) {
			if c.TargetExpire, err = parseSeconds(v); err == nil && c.TargetExpire < time.Second {
				return errors.New("not at least 1 second")
			}
			return err
		},
	},
	{
		// With Redis, how often the records are rewritten; with etcd,
		// unused: the etcd client renews the lease by itself every TTL/3.
		name: "zmq_target_update", section: sectionZMQ,
		set: func(c *Config, v string) (err error) {
			if v == "" {
				c.TargetUpdate = 0
				return nil
			}
			if c.TargetUpdate, err = parseSeconds(v); err == nil && c.TargetUpdate <= 0 {
				return errors.New("not a positive number of seconds")
			}
			return err
		},
	},
	{
		name: "plain_users", section: sectionProxy, long: "plain-users", arg: "FILE",
		help: "require PLAIN on every socket: FILE has user:bcrypt-hash per line; re-read on SIGHUP",
		set:  parsePlainUsers,
	},
	{
		name: "curve_secret_key", section: sectionProxy, long: "curve-secret-key", arg: "FILE",
		help: "require CURVE on every socket, with the secret key in FILE (zmq-proxy keygen writes one); with --curve-allow",
		set:  curveSecretOption("curve_secret_key", func(s *securityConfig) (*string, *security.KeyPair) { return &s.CurveSecretKey, &s.curveKeys }),
	},
	{
		name: "curve_allow", section: sectionProxy, long: "curve-allow", arg: "DIR",
		help: "CURVE clients allowed: one public key file per client in DIR (as zcert writes them); re-read on SIGHUP; empty refuses everyone",
		set:  parseCurveAllow,
	},
	{
		name: "curve_server_key", section: sectionProxy, long: "curve-server-key", arg: "KEY|FILE",
		help: "local proxy (-lp): subscribe with CURVE to central publishers whose public key is KEY (Z85) or in FILE; with --curve-client-key",
		set:  parseServerKey,
	},
	{
		name: "curve_client_key", section: sectionProxy, long: "curve-client-key", arg: "FILE",
		help: "local proxy (-lp): its own CURVE secret key file, for --curve-server-key",
		set:  curveSecretOption("curve_client_key", func(s *securityConfig) (*string, *security.KeyPair) { return &s.CurveClientKey, &s.curveClient }),
	},
	{
		name: "plain_user", section: sectionProxy, long: "plain-user", arg: "USER",
		help: "local proxy (-lp): subscribe with PLAIN as USER; with --plain-password",
		set:  func(c *Config, v string) (err error) { c.Sec.PlainUser, err = parsePlainCredential(v); return err },
	},
	{
		name: "plain_password", section: sectionProxy, long: "plain-password", arg: "PASSWORD",
		env: envPlainPassword, secret: true,
		help: "local proxy (-lp): PLAIN password; better in $" + envPlainPassword,
		set:  func(c *Config, v string) (err error) { c.Sec.PlainPassword, err = parsePlainCredential(v); return err },
	},
	{
		name: "watch", cmds: CmdList, short: "w", long: "watch", boolean: true, def: "false",
		help: "after the table, print each change until interrupted",
		set:  func(c *Config, v string) (err error) { c.Watch, err = parseBool(v); return err },
	},
	{
		name: "json", cmds: CmdList | CmdBench, long: "json", boolean: true, def: "false",
		help: "print one JSON object per line instead of a table",
		set:  func(c *Config, v string) (err error) { c.JSON, err = parseBool(v); return err },
	},
	{
		name: "admin_addr", section: sectionProxy, long: "admin-addr", arg: "HOST:PORT",
		help: "serve POST /pause, POST /resume and GET /stats (zmq-proxy ctl) on HOST:PORT, loopback when HOST is empty; empty: off",
		set:  func(c *Config, v string) (err error) { c.AdminAddr, err = parseAdminAddr(v); return err },
	},
	{
		name: "admin_token_file", section: sectionProxy, long: "admin-token-file", arg: "FILE",
		help: "require \"Authorization: Bearer TOKEN\" on the admin endpoint, TOKEN the one line of FILE (16 characters or more); needed for a non-loopback --admin-addr",
		set: func(c *Config, v string) (err error) {
			c.AdminTokenFile, c.AdminToken = v, ""
			delete(c.Sec.loose, "admin_token_file")
			if v == "" {
				return nil
			}
			if c.AdminToken, err = ReadTokenFile(v); err != nil {
				return fmt.Errorf("not a token file: %w", err)
			}
			c.Sec.noteLoose("admin_token_file", v)
			return nil
		},
	},
	{
		name: "pprof_addr", section: sectionProxy, long: "pprof-addr", arg: "HOST:PORT",
		help: "serve Go's /debug/pprof/ (CPU profiles, traces, heap) on HOST:PORT, loopback when HOST is empty; empty: off. Unauthenticated: keep it on loopback",
		set:  func(c *Config, v string) (err error) { c.PprofAddr, err = parseAdminAddr(v); return err },
	},
	{
		name: "drain_timeout", section: sectionProxy, long: "drain-timeout", arg: "DURATION",
		def:  actors.DefaultDrainTimeout.String(),
		help: "on SIGTERM, leave the registry and route on until the peers are gone or quiet, at most DURATION (5s, 1m, or seconds; 0: no drain); a second signal stops at once",
		set:  func(c *Config, v string) (err error) { c.DrainTimeout, err = parseDrainTimeout(v); return err },
	},
	{
		name: "check_config", long: "check-config", boolean: true, def: "false",
		help: "check the flags and the configuration file, print one line and exit: 0 if good, 2 if not; binds nothing, starts no etcd",
		set:  func(c *Config, v string) (err error) { c.CheckConfig, err = parseBool(v); return err },
	},
	{
		name: "version", long: "version", boolean: true, def: "false",
		help: "print the version and the VCS revision built from, and exit",
		set:  func(c *Config, v string) error { return nil }, // Resolve answers it first
	},
	{
		name: "timeout", cmds: CmdList | CmdClients, long: "timeout", arg: "DURATION", def: DefaultListTimeout,
		help: "give up when etcd (list), the reply (call) or the ACK (cast --acks) has not come within DURATION: 5s, 1m, or seconds",
		set:  func(c *Config, v string) (err error) { c.ListTimeout, err = parseTimeout(v); return err },
	},
	{
		name: "rpc_use_acks", cmds: CmdClients, section: sectionZMQ, long: "acks", boolean: true, def: "false",
		help: "acknowledged delivery: a CALL or CAST not ACKed in time is sent again through another proxy; echo-server ACKs each CALL and CAST on receipt only with it",
		set:  func(c *Config, v string) (err error) { c.Acks, err = parseBool(v); return err },
	},
	{
		name: "rpc_ack_timeout_base", cmds: CmdClients, section: sectionZMQ, long: "ack-timeout", arg: "SECONDS", def: "2",
		help: "wait this long for the first ACK, twice as long for each retry's",
		set:  func(c *Config, v string) (err error) { c.AckTimeout, err = parseSeconds(v); return err },
	},
	{
		name: "rpc_retry_attempts", cmds: CmdClients, section: sectionZMQ, long: "retries", arg: "N", def: "3",
		help: "with --acks, send a message again at most N times",
		set:  func(c *Config, v string) (err error) { c.Retries, err = parseInt(v, 1); return err },
	},
	{
		name: "node", cmds: CmdRPC, long: "node", arg: "NODE", env: "NODE_NAME",
		help: "echo-server: the node whose local publisher proxy it subscribes to, the --name that proxy registers (on Kubernetes, the pod's spec.nodeName from the downward API); default $NODE_NAME, else --name",
		set:  func(c *Config, v string) error { c.Node = v; return nil },
	},
	{
		name: "bench_clients", cmds: CmdBench, long: "clients", arg: "N", def: "1",
		help: "clients, each with its own connections",
		set:  func(c *Config, v string) (err error) { c.BenchClients, err = parseInt(v, 1); return err },
	},
	{
		name: "bench_outstanding", cmds: CmdBench, long: "outstanding", arg: "N", def: "1",
		help: "messages each client keeps in flight",
		set:  func(c *Config, v string) (err error) { c.BenchOutstanding, err = parseInt(v, 1); return err },
	},
	{
		name: "bench_window", cmds: CmdBench, long: "window", arg: "N", def: "256",
		help: "cast and fanout to the bench's own servers: at most N messages per client sent and not yet handled, in one window the clients share (0 = no limit)",
		set:  func(c *Config, v string) (err error) { c.BenchWindow, err = parseInt(v, 0); return err },
	},
	{
		name: "bench_servers", cmds: CmdBench, long: "servers", arg: "N", def: "2",
		help: "echo servers the bench starts (none with --target)",
		set:  func(c *Config, v string) (err error) { c.BenchServers, err = parseInt(v, 1); return err },
	},
	{
		name: "bench_target", cmds: CmdBench, long: "target", arg: "TOPIC",
		help: "send to the running servers of TOPIC instead of starting echo servers",
		set:  func(c *Config, v string) error { c.BenchTarget = v; return nil },
	},
	{
		name: "bench_size", cmds: CmdBench, long: "size", arg: "BYTES", def: "64",
		help: "payload size of each message",
		set:  func(c *Config, v string) (err error) { c.BenchSize, err = parseInt(v, 0); return err },
	},
	{
		name: "bench_duration", cmds: CmdBench, long: "duration", arg: "DURATION", def: "10s",
		help: "how long to send (unless --count)",
		set:  func(c *Config, v string) (err error) { c.BenchDuration, err = parseTimeout(v); return err },
	},
	{
		name: "echo_record", cmds: CmdEcho, long: "record", arg: "FILE",
		help: "append one line per handler run to FILE: server name, type, method, msg_id and the \"seq\" argument (- if none); one write each, so a kill -9 loses no line written",
		set:  func(c *Config, v string) error { c.Record = v; return nil },
	},
	{
		name: "bench_count", cmds: CmdBench, long: "count", arg: "N", def: "0",
		help: "send N messages in all instead of for --duration",
		set:  func(c *Config, v string) (err error) { c.BenchCount, err = parseInt(v, 0); return err },
	},
	{
		name: "bench_cpuprofile", cmds: CmdBench, long: "cpuprofile", arg: "FILE",
		help: "write the bench process's CPU profile (its clients and servers) during the run to FILE (go tool pprof)",
		set:  func(c *Config, v string) error { c.BenchCPUProfile = v; return nil },
	},
}

// ResolveProxy resolves the configuration of the proxy; see Resolve.
func ResolveProxy(args []string) (*Config, error) { return Resolve(CmdProxy, args) }

// Resolve parses the command line args of cmd (without the program and
// command names), reads the INI file they name, and returns the resolved
// configuration. It returns flag.ErrHelp for -h. Any other error is one line
// that names the offending value and where it came from.
func Resolve(cmd Command, args []string) (*Config, error) {
	fs, flags := newFlagSet(cmd)
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		// Flags may follow the positional arguments of the client commands.
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(positional) > 0 && cmd&CmdClients == 0 {
		return nil, fmt.Errorf("unexpected argument %q", positional[0])
	}
	given := make(map[string]*flagValue) // by option name
	fs.Visit(func(f *flag.Flag) {
		v := flags[f.Name]
		given[v.opt.name] = v
	})
	if v := given["version"]; v != nil {
		if on, err := parseBool(v.raw); on || err != nil {
			return nil, ErrVersion
		}
	}

	c := &Config{cmd: cmd, settings: make(map[string]setting, len(options))}
	var file map[string]string // raw INI values by option name
	var path string
	if v := given["config_file"]; v != nil {
		path = v.raw
		var err error
		if file, c.ignored, err = readINI(path); err != nil {
			return nil, fmt.Errorf("%s %s: %w", v.spelled, path, err)
		}
	}
	for i := range options {
		o := &options[i]
		if !o.takes(cmd) {
			continue
		}
		// Only the value that wins is parsed: a file written for
		// oslo.messaging keeps working when a flag overrides one of its
		// values that zmq-proxy would refuse.
		raw, defErr := o.defaultValue()
		s := setting{raw: raw, from: sourceDefault, origin: fromDefault}
		if raw, ok := file[o.name]; ok {
			s = setting{raw: raw, from: path, origin: fromFile}
		}
		if raw := lookupEnv(o.env); raw != "" {
			s = setting{raw: raw, from: "$" + o.env, origin: fromEnv}
		}
		if v := given[o.name]; v != nil {
			s = setting{raw: v.raw, from: v.spelled, origin: fromFlag}
		}
		if s.origin == fromDefault && defErr != nil {
			return nil, fmt.Errorf("default %s: %w; give --%s", o.name, oneLine{defErr}, o.long)
		}
		if err := o.set(c, s.raw); err != nil {
			return nil, blame(o, s, err)
		}
		c.settings[o.name] = s
	}
	if err := c.useTransportURL(); err != nil {
		return nil, err
	}
	if err := c.checkUnsupported(path, file); err != nil {
		return nil, err
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	c.Kind = actors.ChooseKind(c.LocalPublisher, c.FrontendPort, c.BackendPort)
	c.Args = positional
	return c, nil
}

// blame returns err, a parser's error ("not ..."), as an error about the
// value s of option o that says where the value came from:
//
//	--frontend-port: "abc" is not a port number
//	proxy.ini: [zmq_proxy_opts] frontend_port = 70000: not in 0..65535
//	default name = "a b": not a host name
func blame(o *option, s setting, err error) error {
	raw := o.shown(s.raw)
	switch s.origin {
	case fromDefault:
		return fmt.Errorf("default %s = %q: %w", o.name, raw, err)
	case fromFile:
		return fmt.Errorf("%s: [%s] %s = %s: %w", s.from, o.section, o.iniKey(), raw, err)
	}
	return fmt.Errorf("%s: %q is %w", s.from, raw, err)
}

// blameSetting is blame for the resolved value of the option named name.
func (c *Config) blameSetting(name string, err error) error {
	return blame(optionNamed(name), c.settings[name], err)
}

// describe names the resolved value of an option and its source, as in
// "5, from --target-expire" or "5, default".
func (c *Config) describe(name string) string {
	s := c.settings[name]
	if s.origin == fromDefault {
		return optionNamed(name).shown(s.raw) + ", default"
	}
	return optionNamed(name).shown(s.raw) + ", from " + s.from
}

// spell says how to give an option: "--etcd-key or etcd_key in the file".
func spell(name string) string {
	o := optionNamed(name)
	if o.env != "" {
		return fmt.Sprintf("--%s, %s in the file, or $%s", o.long, o.name, o.env)
	}
	return fmt.Sprintf("--%s or %s in the file", o.long, o.name)
}

// checkPairs checks options that go in pairs: one given without the other
// is blamed.
func (c *Config) checkPairs(pairs ...[2]string) error {
	for _, p := range pairs {
		a, b := c.settings[p[0]], c.settings[p[1]]
		switch {
		case a.raw != "" && b.raw == "":
			return c.blameSetting(p[0], fmt.Errorf("not usable without %s: give %s", p[1], spell(p[1])))
		case a.raw == "" && b.raw != "":
			return c.blameSetting(p[1], fmt.Errorf("not usable without %s: give %s", p[0], spell(p[0])))
		}
	}
	return nil
}

// check checks the values that must agree with each other, and blames the
// one that was given last in the order of precedence.
func (c *Config) check() error {
	// Authentication and TLS go in pairs.
	if err := c.checkPairs([2]string{"etcd_user", "etcd_password"}, [2]string{"etcd_cert", "etcd_key"}); err != nil {
		return err
	}
	if c.cmd != CmdProxy {
		return nil
	}
	// A record rewritten after it expired would come and go.
	if c.TargetUpdate != 0 && c.TargetUpdate >= c.TargetExpire {
		if c.settings["zmq_target_expire"].origin <= c.settings["zmq_target_update"].origin {
			return c.blameSetting("zmq_target_update",
				fmt.Errorf("not less than zmq_target_expire (%s)", c.describe("zmq_target_expire")))
		}
		return c.blameSetting("zmq_target_expire",
			fmt.Errorf("not greater than zmq_target_update (%s)", c.describe("zmq_target_update")))
	}
	if err := c.checkSecurity(); err != nil {
		return err
	}
	if err := c.checkPorts(); err != nil {
		return err
	}
	if c.AdminAddr != "" && c.AdminToken == "" && !addr.Loopback(c.AdminAddr) {
		return c.blameSetting("admin_addr", errors.New("not a loopback address, and no admin_token_file: "+
			"anyone who reaches it could pause the proxy; give --admin-token-file or a loopback address"))
	}
	if c.Registry.Mode == RegistryEmbedded && c.StateDir == "" {
		if c.settings["state_dir"].origin == fromDefault {
			return errors.New("no state directory for the embedded etcd: " +
				"none of $STATE_DIRECTORY, $XDG_STATE_HOME, $HOME is set; give --state-dir or -u")
		}
		return c.blameSetting("state_dir", errors.New("not a directory; the embedded etcd needs one"))
	}
	return nil
}

// readINI reads oslo.messaging's INI file. It returns the raw value of every option
// the file sets, by option name, and the keys it does not know. Every
// command knows every key, so that the proxy's file serves list too.
func readINI(path string) (vals map[string]string, ignored []string, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	// oslo.config does not strip comments at the end of a value; neither do we.
	f, err := ini.LoadSources(ini.LoadOptions{IgnoreInlineComment: true}, data)
	if err != nil {
		return nil, nil, oneLine{err}
	}
	known := make(map[[2]string]string) // {section, key} -> option name
	for _, o := range options {
		if o.section != "" {
			known[[2]string{o.section, o.iniKey()}] = o.name
		}
	}
	vals = make(map[string]string)
	for _, s := range f.Sections() {
		for _, k := range s.Keys() {
			// Value, not String: no %(name)s interpolation, as in oslo.config.
			if name, ok := known[[2]string{s.Name(), k.Name()}]; ok {
				vals[name] = k.Value()
				continue
			}
			if err := unknownKey(s.Name(), k.Name(), k.Value(), vals); err != nil {
				return nil, nil, err
			}
			ignored = append(ignored, fmt.Sprintf("[%s] %s", s.Name(), k.Name()))
		}
	}
	return vals, ignored, nil
}

// log writes, at debug level, each option's value and where it came from,
// and the INI keys that were ignored.
func (c *Config) Log(logger *slog.Logger) {
	logger.Debug("configuration precedence", "order", precedence)
	for _, o := range options {
		if !o.takes(c.cmd) {
			continue
		}
		s := c.settings[o.name]
		logger.Debug("option", "name", o.name, "value", o.shown(s.raw), "source", s.from)
	}
	for _, key := range c.ignored {
		logger.Debug("ignoring unknown configuration key", "file", c.ConfigFile, "key", key)
	}
	if c.cmd == CmdProxy {
		logger.Debug("proxy kind", "kind", c.Kind, "registry", c.Registry)
	}
}

// proxyConfig is the library's configuration of this proxy.
func (c *Config) ProxyConfig(logger *slog.Logger) actors.Config {
	return actors.Config{
		Kind:           c.Kind,
		Host:           c.Host,
		FrontendPort:   c.FrontendPort,
		BackendPort:    c.BackendPort,
		PublisherPort:  c.PublisherPort,
		AckPubSub:      c.AckPubSub,
		PubSub:         c.UsePubSub,
		HWM:            c.HWM,
		HWMBytes:       c.HWMBytes,
		MaxConnections: c.MaxConnections,
		MaxHandshakes:  c.MaxHandshakes,
		MaxFrames:      c.MaxFrames,
		MaxMessageSize: c.MaxMessageSize,
		SubscribeOn:    c.SubscribeOn,
		MetricsAddr:    c.MetricsAddr,
		AdminAddr:      c.AdminAddr,
		AdminToken:     c.AdminToken,
		PprofAddr:      c.PprofAddr,
		Registry:       c.registryConfig(),
		Debug:          c.Debug,
		Logger:         logger,

		MaxHandshakesPerSource: c.MaxHsPerSource,

		Security:           c.serverSecurity(),
		SubscriberSecurity: c.subscriberSecurity(),
	}
}

// registryConfig is the library's configuration of the proxy's
// registration: zmq:// disables it, zmq+etcd:// names the cluster,
// zmq+redis:// the Redis matchmaker, no URL means the etcd on EtcdAddr,
// embedded if need be.
func (c *Config) registryConfig() actors.RegistryConfig {
	r := actors.RegistryConfig{
		Disabled:     c.Registry.Mode == RegistryNone,
		EmbeddedAddr: c.EtcdAddr,
		StateDir:     c.StateDir,
		Prefix:       c.EtcdPrefix,
		TTL:          c.TargetExpire,
		Username:     c.EtcdUser,
		Password:     c.EtcdPassword,
		CACert:       c.EtcdCACert,
		Cert:         c.EtcdCert,
		Key:          c.EtcdKey,
		Name:         c.Name,
	}
	switch c.Registry.Mode {
	case RegistryEtcd:
		r.Endpoints = slices.Clone(c.Registry.Endpoints)
	case RegistryRedis:
		r.Redis = actors.RedisConfig{
			Addr: c.Registry.RedisAddr, Password: c.Registry.RedisPassword, DB: c.Registry.RedisDB,
			Update: c.TargetUpdate,
		}
	}
	return r
}

// NewLogger returns the process's logger: slog text on stderr, or appended
// to the -l file; debug level with -d. The caller calls closeLog when it is
// done logging.
func NewLogger(c *Config, stderr io.Writer) (logger *slog.Logger, closeLog func() error, err error) {
	logger, logs, err := NewFileLogger(c, stderr)
	if err != nil || logs == nil {
		return logger, func() error { return nil }, err
	}
	return logger, logs.Close, nil
}

// oneLine is an error from another package whose text may span lines, such
// as ini's parse errors (they end in a newline); it reads as one line.
type oneLine struct{ err error }

func (e oneLine) Error() string {
	return strings.TrimSpace(strings.ReplaceAll(e.err.Error(), "\n", " "))
}

func (e oneLine) Unwrap() error { return e.err }

// useTransportURL applies oslo.messaging's [DEFAULT] transport_url when
// url was given nowhere, and completes a zmq+redis:// URL from
// [matchmaker_redis]: its host, port and password fill what the URL
// leaves out.
func (c *Config) useTransportURL() error {
	if c.settings["url"].origin == fromDefault && c.TransportURL != "" {
		r, err := parseRegistryURL(c.TransportURL)
		if err != nil {
			return c.blameSetting("transport_url", err)
		}
		c.URL, c.Registry = c.TransportURL, r
		c.settings["url"] = c.settings["transport_url"]
	}
	if c.Registry.Mode != RegistryRedis {
		return nil
	}
	host, port := c.Registry.redisHost, c.Registry.redisPort
	if host == "" {
		host = c.RedisHost
	}
	if port == 0 {
		port = c.RedisPort
	}
	c.Registry.RedisAddr = net.JoinHostPort(host, strconv.Itoa(port))
	if c.Registry.RedisPassword == "" {
		c.Registry.RedisPassword = c.RedisPassword
	}
	return nil
}
