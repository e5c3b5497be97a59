package config

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/zmq-proxy/zmq-proxy/actors"
)

// Checks of the configuration that an operator would otherwise find out
// about from a proxy that does something else than asked, or fails to
// start in a loop under systemd: a misspelt key of zmq-proxy's own
// section, an option of oslo.messaging that zmq-proxy does not support,
// two listeners on one port.

// unsupported are oslo.messaging's options that zmq-proxy does not
// implement and must not silently ignore, by {section, key}: the name they
// are kept under in the file's values, for checkUnsupported.
var unsupported = map[[2]string]string{
	{sectionRedis, "sentinel_hosts"}: "sentinel_hosts",
}

// unknownKey is readINI's answer to a key that is no option: in
// [zmq_proxy_opts], zmq-proxy's own section, an error (a misspelt key
// would be ignored, and its default used); an unsupported option is kept
// in vals for checkUnsupported; any other key is ignored (nil), as it
// belongs to the services that read the same file.
func unknownKey(section, key, value string, vals map[string]string) error {
	if name, ok := unsupported[[2]string{section, key}]; ok {
		if strings.TrimSpace(value) != "" {
			vals[name] = value
		}
		return nil
	}
	if section != sectionProxy {
		return nil
	}
	msg := fmt.Sprintf("[%s] %s: not an option of zmq-proxy", section, key)
	if near := nearestKey(section, key); near != "" {
		msg += fmt.Sprintf(" (did you mean %s?)", near)
	}
	return errors.New(msg + "; zmq-proxy -h lists the keys of each section")
}

// nearestKey is the key of section closest to key, within two edits; ""
// if none is.
func nearestKey(section, key string) string {
	best, bestD := "", 3
	for _, o := range options {
		if o.section != section {
			continue
		}
		if d := editDistance(key, o.iniKey()); d < bestD {
			best, bestD = o.iniKey(), d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// checkUnsupported refuses an option of oslo.messaging that zmq-proxy does
// not implement, when it would matter: Redis Sentinel with the Redis
// matchmaker. path is the file's, file its values.
func (c *Config) checkUnsupported(path string, file map[string]string) error {
	if v, ok := file["sentinel_hosts"]; ok && c.Registry.Mode == RegistryRedis {
		return fmt.Errorf("%s: [%s] sentinel_hosts = %s: Redis Sentinel is not supported: "+
			"zmq-proxy talks to one Redis server; give its address as [%s] host and port, or in the URL (docs/deploy.md, \"Redis\")",
			path, sectionRedis, v, sectionRedis)
	}
	return nil
}

// listener is one address the proxy would listen on.
type listener struct {
	option string // the option that sets it
	host   string // "" or a wildcard address: every interface
	port   int    // 0: a random one, which clashes with nothing
}

// listeners are the addresses the proxy would listen on, by the kind it
// would run.
func (c *Config) listeners() []listener {
	var ls []listener
	kind := actors.ChooseKind(c.LocalPublisher, c.FrontendPort, c.BackendPort)
	if kind != actors.KindLocalPublisher {
		ls = append(ls, listener{"frontend_port", c.Host, c.FrontendPort})
	}
	if kind == actors.KindDoubleRouter {
		ls = append(ls, listener{"backend_port", c.Host, c.BackendPort})
	}
	if kind == actors.KindLocalPublisher || c.UsePubSub != actors.PubSubOff {
		ls = append(ls, listener{"publisher_port", c.Host, c.PublisherPort})
	}
	for _, a := range []struct{ option, addr string }{
		{"metrics_addr", c.MetricsAddr},
		{"admin_addr", c.AdminAddr},
		{"pprof_addr", c.PprofAddr},
	} {
		if a.addr == "" {
			continue
		}
		host, port, _ := net.SplitHostPort(a.addr)
		n, _ := strconv.Atoi(port)
		ls = append(ls, listener{a.option, host, n})
	}
	if c.Registry.Mode == RegistryEmbedded {
		// The etcd the proxy starts when none answers there.
		host, port, _ := net.SplitHostPort(c.EtcdAddr)
		n, _ := strconv.Atoi(port)
		ls = append(ls, listener{"etcd_addr", host, n})
	}
	return ls
}

// checkPorts refuses two listeners on one port of one address: the proxy
// would fail to bind the second (under systemd, start after start). Of the
// two, the value given last in the order of precedence is blamed.
func (c *Config) checkPorts() error {
	ls := c.listeners()
	for i, a := range ls {
		for _, b := range ls[:i] {
			if a.port == 0 || a.port != b.port || !overlap(a.host, b.host) {
				continue
			}
			blamed, other := a, b
			if c.settings[a.option].origin < c.settings[b.option].origin {
				blamed, other = b, a
			}
			return c.blameSetting(blamed.option, fmt.Errorf("the port of %s too (%s): every socket needs a port of its own",
				other.option, c.describe(other.option)))
		}
	}
	return nil
}

// overlap reports whether listeners on hosts a and b would take the same
// port: the same host, or one of them every interface.
func overlap(a, b string) bool {
	wild := []string{"", "0.0.0.0", "::", "*"}
	return a == b || slices.Contains(wild, a) || slices.Contains(wild, b)
}
