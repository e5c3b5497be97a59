package config

import (
	clientv3 "go.etcd.io/etcd/client/v3"

	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/zmq-proxy/zmq-proxy/actors"
	"github.com/zmq-proxy/zmq-proxy/internal/logging"
	"github.com/zmq-proxy/zmq-proxy/registry"
	"github.com/zmq-proxy/zmq-proxy/rpc"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/status"
)

// clientConfig says how list reaches etcd: the URL's cluster, or with no
// URL the etcd on --etcd-addr.
func (c *Config) EtcdClientConfig() (registry.ClientConfig, error) {
	cfg := registry.ClientConfig{
		Username:    c.EtcdUser,
		Password:    c.EtcdPassword,
		CACert:      c.EtcdCACert,
		Cert:        c.EtcdCert,
		Key:         c.EtcdKey,
		DialTimeout: c.RegistryWait(),
	}
	switch c.Registry.Mode {
	case RegistryEtcd:
		cfg.Endpoints = c.Registry.Endpoints
	case RegistryEmbedded:
		cfg.Endpoints = []string{c.EtcdAddr}
	case RegistryRedis:
		return cfg, c.blameSetting("url", errors.New("not an etcd registry, which this command reads; "+
			"oslo.messaging's Redis matchmaker holds the PUBLISHERS and ROUTERS sets (redis-cli SMEMBERS)"))
	default:
		return cfg, c.blameSetting("url", errors.New("not a registry to list: zmq:// means none"))
	}
	return cfg, nil
}

// clientError is the exit code and the error of a failed NewClient: with a
// user name, the client authenticates at once, so etcd's silence or refusal
// shows here (1); anything else is a certificate file that is not one (2).
func (c *Config) ClientError(err error) (int, error) {
	var etcdErr rpctypes.EtcdError
	switch _, isStatus := status.FromError(err); {
	case errors.Is(err, context.DeadlineExceeded):
		return 1, c.NoEtcd()
	case errors.As(err, &etcdErr) || isStatus:
		return 1, fmt.Errorf("etcd at %s: %w", strings.Join(c.Endpoints(), ","), oneLine{err})
	}
	return 2, oneLine{err}
}

// probe asks etcd for the number of records, so that an etcd that does not
// answer by deadline, or refuses, is one clear error rather than a watcher
// retrying for ever.
func (c *Config) Probe(ctx context.Context, cli *clientv3.Client, deadline time.Time) error {
	pctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	_, err := cli.Get(pctx, registry.Key(c.EtcdPrefix, ""), clientv3.WithPrefix(), clientv3.WithCountOnly())
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("interrupted: %w", context.Cause(ctx))
	case pctx.Err() != nil || errors.Is(err, context.DeadlineExceeded):
		return c.NoEtcd()
	}
	return fmt.Errorf("etcd at %s: %w", strings.Join(c.Endpoints(), ","), oneLine{err})
}

// noEtcd is the error for an etcd that did not answer in time
// (registryWait).
func (c *Config) NoEtcd() error {
	if c.Registry.Mode == RegistryEmbedded {
		return fmt.Errorf("no etcd at %s: nothing answered within %s; start zmq-proxy first (it runs one there), or give -u",
			c.EtcdAddr, c.RegistryWait())
	}
	return fmt.Errorf("no etcd at %s (url from %s): nothing answered within %s",
		strings.Join(c.Endpoints(), ","), c.settings["url"].from, c.RegistryWait())
}

// minRegistryWait is how long the client commands wait at least for the
// registry to answer, whatever their --timeout (the reply's or the ACK's):
// "call --timeout 1ms" must time out waiting for the reply, not for etcd.
const minRegistryWait = 2 * time.Second

// registryWait is how long a command waits for the registry to answer:
// list's --timeout; the client commands' --timeout, at least
// minRegistryWait.
func (c *Config) RegistryWait() time.Duration {
	if c.cmd == CmdList {
		return c.ListTimeout
	}
	return max(c.ListTimeout, minRegistryWait)
}

func (c *Config) Endpoints() []string {
	if c.Registry.Mode == RegistryEmbedded {
		return []string{c.EtcdAddr}
	}
	return c.Registry.Endpoints
}

// ClientUsage is each client command's synopsis and description.
var ClientUsage = map[string]struct{ Args, Text string }{
	"call": {"TOPIC[.SERVER] METHOD [JSON_ARGS]",
		"Call METHOD on one server of TOPIC (or the one named SERVER) and print the reply as JSON. " +
			"Exit status: 0 with the reply; 1 when it failed: no proxy, no server, no reply within --timeout, " +
			"etcd or Redis unreachable; 2 for a bad flag or argument; 3 when the server raised a failure " +
			"(its class and message on stderr)."},
	"cast": {"TOPIC[.SERVER] METHOD [JSON_ARGS]",
		"Send METHOD to one server of TOPIC, without a reply; with --acks, wait until a server acknowledged it."},
	"fanout": {"TOPIC METHOD [JSON_ARGS]", "Send METHOD to every server of TOPIC."},
	"notify": {"TOPIC.PRIORITY EVENT_TYPE [JSON_PAYLOAD]",
		"Send a notification, as oslo.messaging's notifier does, to the listeners of TOPIC.PRIORITY."},
	"echo-server": {"TOPIC [SERVER]",
		"Serve TOPIC (as SERVER): echo returns its arguments and the server's name, sleep does the same " +
			"after {\"ms\": N} milliseconds, fail raises a ValueError. With --acks it ACKs each CALL and CAST on receipt " +
			"(oslo.messaging's rpc_use_acks); with --record FILE it appends one line per handler run to FILE. " +
			"Every message received (call, cast, fanout, notify) is printed on stdout as one JSON line " +
			"with its type, method, msg_id, routing_key and arguments (or event_type, priority and payload). " +
			"Runs until SIGINT or SIGTERM."},
	"bench": {"call|cast|fanout",
		"Measure the running deployment: clients send for --duration (or --count messages) to echo servers " +
			"the bench starts (or to --target's), and the bench prints the rate, the latency percentiles, " +
			"and how many messages were lost or handled twice. With --json, the last line is one JSON object. " +
			"Latency (p50_us, p99_us, p999_us; \"latency\" names it): for call, the round trip from Call to its reply; " +
			"for cast and fanout to the bench's servers, delivery: from the send to the handler's start at a server, " +
			"per message and server (how long the send took to return is send_p50_us, send_p99_us); " +
			"with --target, how long the send took to return. rate is messages sent per second; " +
			"cpu_us_per_msg is the bench process's CPU (clients and servers, not the proxies) per message sent."},
}

func PrintClientUsage(w io.Writer, name string) {
	u := ClientUsage[name]
	fmt.Fprintf(w, "Usage: %s %s %s [options]\n\n", ProgName, name, u.Args)
	fmt.Fprint(w, wrap(u.Text, "", 78))
	cmd := CmdRPC
	switch name {
	case "bench":
		cmd = CmdBench
	case "echo-server":
		cmd = CmdEcho
	}
	fmt.Fprintf(w, "\nOptions:\n")
	printOptions(w, cmd)
	fmt.Fprintf(w, "\n%s", wrap("With no URL, the command uses the etcd on --etcd-addr, the one a proxy "+
		"started without a URL runs. The configuration file is the proxy's; the client commands read its "+
		"url, etcd_* and rpc_* keys.", "", 78))
}

// rpcError is err, from the rpc package, with what to do about it.
func (c *Config) RPCError(err error) error {
	switch {
	case errors.Is(err, rpc.ErrTimeout):
		return fmt.Errorf("%w, within %s (--timeout): a busy server or a slow network needs a longer --timeout", err, c.ListTimeout)
	case errors.Is(err, rpc.ErrNoServer):
		return fmt.Errorf("%w: start a server of the topic; %s list shows the registered ones", err, ProgName)
	case errors.Is(err, rpc.ErrNoProxy):
		return fmt.Errorf("%w: start a central zmq-proxy that registers where this command looks (%s)", err, c.Where())
	}
	return err
}

// where names the registry a client command reads.
func (c *Config) Where() string {
	if c.Registry.Mode == RegistryRedis {
		return "Redis at " + c.Registry.RedisAddr
	}
	return "etcd at " + strings.Join(c.Endpoints(), ",")
}

// summary is the resolved configuration in one line: the proxy kind, the
// ports it would bind ("0" for a random one), the registry and the
// metrics address.
func (c *Config) Summary() string {
	host := c.Host
	if host == "" {
		host = "*"
	}
	parts := []string{"kind=" + c.Kind.String(), "host=" + host}
	switch c.Kind {
	case actors.KindLocalPublisher:
		parts = append(parts, fmt.Sprintf("publisher_port=%d", c.PublisherPort))
		if len(c.SubscribeOn) > 0 {
			parts = append(parts, "subscribe_on="+strings.Join(c.SubscribeOn, ","))
		}
	case actors.KindSingleRouter:
		parts = append(parts, fmt.Sprintf("frontend_port=%d publisher_port=%d drain_timeout=%v", c.FrontendPort, c.PublisherPort, c.DrainTimeout))
	default:
		parts = append(parts, fmt.Sprintf("frontend_port=%d backend_port=%d publisher_port=%d drain_timeout=%v",
			c.FrontendPort, c.BackendPort, c.PublisherPort, c.DrainTimeout))
	}
	parts = append(parts, fmt.Sprintf("registry=%q", c.Registry.String()))
	if c.Registry.Mode == RegistryEmbedded {
		parts = append(parts, "etcd_addr="+c.EtcdAddr, "state_dir="+c.StateDir)
	}
	if c.MetricsAddr != "" {
		parts = append(parts, "metrics_addr="+c.MetricsAddr)
	}
	return strings.Join(parts, " ")
}

// NewFileLogger returns the process's logger: slog text on stderr, or
// appended to the -l file; debug level with -d. logs is the -l file, nil
// when logging to stderr; the caller closes it when done logging.
func NewFileLogger(c *Config, stderr io.Writer) (logger *slog.Logger, logs *logging.File, err error) {
	level := slog.LevelInfo
	if c.Debug {
		level = slog.LevelDebug
	}
	w := stderr
	if c.LogFile != "" {
		if logs, err = logging.OpenFile(c.LogFile); err != nil {
			return nil, nil, fmt.Errorf("%s %s: %w", c.settings["log_file"].from, c.LogFile, err)
		}
		w = logs
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})), logs, nil
}

// ErrVersion is what Resolve returns for --version, as it returns
// flag.ErrHelp for -h: the rest of the command line is not looked at.
var ErrVersion = errors.New("version requested")

// parseDrainTimeout parses --drain-timeout: a duration or a number of
// seconds, 0 for none.
func parseDrainTimeout(s string) (time.Duration, error) {
	if s == "0" {
		return 0, nil
	}
	d, err := parseTimeout(s)
	if err != nil {
		return 0, errors.New("not a duration (5s, 1m, a number of seconds, or 0 for no drain)")
	}
	return d, nil
}
