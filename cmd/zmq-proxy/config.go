package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/ini.v1"

	"github.com/zmq-proxy/zmq-proxy/actors"
)

// The configuration of a zmq-proxy process comes from three places; a later
// one overrides an earlier one, option by option:
//
//  1. the built-in defaults (the table below);
//  2. the INI file given with -c, in the seed's layout;
//  3. the flags given on the command line.
//
// resolveConfig does all of it; config.log writes down where each value came
// from.

const progName = "zmq-proxy"

// Sections of the seed's INI file.
const (
	sectionProxy = "zmq_proxy_opts"
	sectionZMQ   = "oslo_messaging_zmq"
)

// sourceDefault is the origin of a value nobody set.
const sourceDefault = "default"

// config is the resolved configuration of one zmq-proxy process.
type config struct {
	ConfigFile string // -c; "" when none
	LogFile    string // -l; "" = stderr
	Debug      bool

	Host           string // bind address; "" = every interface
	FrontendPort   int    // 0 = random
	BackendPort    int    // 0 = random
	PublisherPort  int    // 0 = random
	LocalPublisher bool
	AckPubSub      bool
	URL            string      // as given
	Registry       registryURL // URL parsed
	HWM            int
	MaxMessageSize int64
	MetricsAddr    string // "" = off

	SubscribeOn  []string      // tcp://host:port of each publisher to subscribe to
	TargetExpire time.Duration // lifetime of a registry record; 0 = none
	TargetUpdate time.Duration // period of a registry record's renewal

	Kind actors.Kind // by actors.ChooseKind, the seed's rule

	settings map[string]setting // by option name
	ignored  []string           // INI keys that are not options, as "[section] key"
}

// setting is the raw text of one option's value and where it came from.
type setting struct {
	raw  string
	from string // sourceDefault, the INI file's path, or the flag as given
}

// option is one configurable value: its flags, its INI key, its default.
type option struct {
	name    string // INI key, and the option's name in logs
	section string // INI section; "" for a flag that is not in the file
	short   string // short flag ("f", "lp"); "" when none
	long    string // long flag; "" for a key that is only in the file
	boolean bool   // a flag that takes no value
	arg     string // placeholder of the value in the usage text
	def     string // default, parsed like any other value
	help    string
	set     func(c *config, v string) error
}

// options lists every option, in the order of the usage text.
var options = []option{
	{
		name: "config_file", short: "c", long: "config-file", arg: "FILE",
		help: "read options from the INI file FILE",
		set:  func(c *config, v string) error { c.ConfigFile = v; return nil },
	},
	{
		name: "log_file", short: "l", long: "log-file", arg: "FILE",
		help: "append logs to FILE instead of stderr",
		set:  func(c *config, v string) error { c.LogFile = v; return nil },
	},
	{
		name: "host", section: sectionProxy, short: "H", long: "host", arg: "HOST",
		help: "host name or IP address to bind; empty binds every interface",
		set:  func(c *config, v string) error { c.Host = v; return nil },
	},
	{
		name: "frontend_port", section: sectionProxy, short: "f", long: "frontend-port", arg: "PORT", def: "0",
		help: "front-end ROUTER port; 0 picks a free one",
		set:  func(c *config, v string) (err error) { c.FrontendPort, err = parsePort(v); return err },
	},
	{
		name: "backend_port", section: sectionProxy, short: "b", long: "backend-port", arg: "PORT", def: "0",
		help: "back-end ROUTER port; 0 picks a free one",
		set:  func(c *config, v string) (err error) { c.BackendPort, err = parsePort(v); return err },
	},
	{
		name: "publisher_port", section: sectionProxy, short: "p", long: "publisher-port", arg: "PORT", def: "0",
		help: "back-end PUBLISHER port; 0 picks a free one",
		set:  func(c *config, v string) (err error) { c.PublisherPort, err = parsePort(v); return err },
	},
	{
		name: "local_publisher", section: sectionProxy, short: "lp", long: "local-publisher", boolean: true, def: "false",
		help: "run a node-local publisher proxy, not a central one",
		set:  func(c *config, v string) (err error) { c.LocalPublisher, err = parseBool(v); return err },
	},
	{
		name: "ack_pub_sub", section: sectionProxy, short: "a", long: "ack-pub-sub", boolean: true, def: "false",
		help: "acknowledge PUB/SUB (fanout) messages",
		set:  func(c *config, v string) (err error) { c.AckPubSub, err = parseBool(v); return err },
	},
	{
		name: "url", section: sectionProxy, short: "u", long: "url", arg: "URL",
		help: "registry " + registryURLForm + "; empty: embedded etcd",
		set: func(c *config, v string) (err error) {
			c.URL = v
			c.Registry, err = parseRegistryURL(v)
			return err
		},
	},
	{
		name: "debug", short: "d", long: "debug", boolean: true, def: "false",
		help: "log at debug level, every message included",
		set:  func(c *config, v string) (err error) { c.Debug, err = parseBool(v); return err },
	},
	{
		name: "hwm", section: sectionProxy, long: "hwm", arg: "N", def: strconv.Itoa(actors.DefaultHWM),
		help: "per-peer outbound high-water mark, in messages",
		set:  func(c *config, v string) (err error) { c.HWM, err = parseInt(v, 1); return err },
	},
	{
		name: "max_message_size", section: sectionProxy, long: "max-message-size", arg: "BYTES",
		def:  strconv.Itoa(actors.DefaultMaxMessageSize),
		help: "largest inbound message (all frames), in bytes",
		set:  func(c *config, v string) (err error) { c.MaxMessageSize, err = parseSize(v, 256); return err },
	},
	{
		name: "metrics_addr", section: sectionProxy, long: "metrics-addr", arg: "HOST:PORT",
		help: "serve /metrics and /healthz on HOST:PORT; empty: off",
		set:  func(c *config, v string) (err error) { c.MetricsAddr, err = parseListenAddr(v); return err },
	},
	{
		name: "subscribe_on", section: sectionZMQ,
		set: func(c *config, v string) (err error) { c.SubscribeOn, err = parseEndpoints(v); return err },
	},
	{
		name: "zmq_target_expire", section: sectionZMQ, def: "300",
		set: func(c *config, v string) (err error) {
			c.TargetExpire, err = parseSeconds(v)
			c.TargetExpire = max(c.TargetExpire, 0) // oslo: < 0 means no expiry
			return err
		},
	},
	{
		name: "zmq_target_update", section: sectionZMQ, def: "180",
		set: func(c *config, v string) (err error) {
			if c.TargetUpdate, err = parseSeconds(v); err == nil && c.TargetUpdate <= 0 {
				return fmt.Errorf("not a positive number of seconds")
			}
			return err
		},
	},
}

// resolveConfig parses the command line args (without the program name),
// reads the INI file it names, and returns the resolved configuration. It
// returns flag.ErrHelp for -h. Any other error is one line that names the
// offending value and where it came from.
func resolveConfig(args []string) (*config, error) {
	fs, flags := newFlagSet()
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	given := make(map[string]*flagValue) // by option name
	fs.Visit(func(f *flag.Flag) {
		v := flags[f.Name]
		given[v.opt.name] = v
	})

	c := &config{settings: make(map[string]setting, len(options))}
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
		s := setting{raw: o.def, from: sourceDefault}
		if err := o.set(c, s.raw); err != nil {
			return nil, fmt.Errorf("default %s = %q: %w", o.name, s.raw, err)
		}
		if raw, ok := file[o.name]; ok {
			s = setting{raw: raw, from: path}
			if err := o.set(c, raw); err != nil {
				return nil, fmt.Errorf("%s: [%s] %s = %s: %w", path, o.section, o.name, raw, err)
			}
		}
		if v := given[o.name]; v != nil {
			s = setting{raw: v.raw, from: v.spelled}
			if err := o.set(c, v.raw); err != nil {
				return nil, fmt.Errorf("%s: %q is %w", v.spelled, v.raw, err)
			}
		}
		c.settings[o.name] = s
	}
	if err := c.checkTargetTimes(); err != nil {
		return nil, err
	}
	c.Kind = actors.ChooseKind(c.LocalPublisher, c.FrontendPort, c.BackendPort)
	return c, nil
}

// checkTargetTimes checks that a registry record is renewed before it
// expires, and blames the value that came from the file.
func (c *config) checkTargetTimes() error {
	if c.TargetExpire == 0 || c.TargetUpdate < c.TargetExpire {
		return nil
	}
	exp, upd := c.settings["zmq_target_expire"], c.settings["zmq_target_update"]
	if upd.from != sourceDefault {
		return fmt.Errorf("%s: [%s] zmq_target_update = %s: not less than zmq_target_expire (%s)",
			upd.from, sectionZMQ, upd.raw, exp.raw)
	}
	return fmt.Errorf("%s: [%s] zmq_target_expire = %s: not greater than zmq_target_update (%s)",
		exp.from, sectionZMQ, exp.raw, upd.raw)
}

// readINI reads the seed's INI file. It returns the raw value of every option
// the file sets, by option name, and the keys it does not know.
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
			known[[2]string{o.section, o.name}] = o.name
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
			ignored = append(ignored, fmt.Sprintf("[%s] %s", s.Name(), k.Name()))
		}
	}
	return vals, ignored, nil
}

// log writes, at debug level, each option's value and where it came from,
// and the INI keys that were ignored.
func (c *config) log(logger *slog.Logger) {
	logger.Debug("configuration precedence", "order", "default < config file < flag")
	for _, o := range options {
		s := c.settings[o.name]
		logger.Debug("option", "name", o.name, "value", s.raw, "source", s.from)
	}
	for _, key := range c.ignored {
		logger.Debug("ignoring unknown configuration key", "file", c.ConfigFile, "key", key)
	}
	logger.Debug("proxy kind", "kind", c.Kind, "registry", c.Registry)
}

// proxyConfig is the library's configuration of this proxy.
func (c *config) proxyConfig(logger *slog.Logger) actors.Config {
	return actors.Config{
		Kind:           c.Kind,
		Host:           c.Host,
		FrontendPort:   c.FrontendPort,
		BackendPort:    c.BackendPort,
		PublisherPort:  c.PublisherPort,
		AckPubSub:      c.AckPubSub,
		HWM:            c.HWM,
		MaxMessageSize: c.MaxMessageSize,
		SubscribeOn:    c.SubscribeOn,
		MetricsAddr:    c.MetricsAddr,
		Debug:          c.Debug,
		Logger:         logger,
	}
}

// newLogger returns the process's logger: slog text on stderr, or appended
// to the -l file; debug level with -d. The caller calls closeLog when it is
// done logging.
func newLogger(c *config, stderr io.Writer) (logger *slog.Logger, closeLog func() error, err error) {
	level := slog.LevelInfo
	if c.Debug {
		level = slog.LevelDebug
	}
	w, closeLog := stderr, func() error { return nil }
	if c.LogFile != "" {
		f, err := os.OpenFile(c.LogFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return nil, nil, fmt.Errorf("%s %s: %w", c.settings["log_file"].from, c.LogFile, err)
		}
		w, closeLog = f, f.Close
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})), closeLog, nil
}

// oneLine is an error from another package whose text may span lines, such
// as ini's parse errors (they end in a newline); it reads as one line.
type oneLine struct{ err error }

func (e oneLine) Error() string {
	return strings.TrimSpace(strings.ReplaceAll(e.err.Error(), "\n", " "))
}

func (e oneLine) Unwrap() error { return e.err }
