package main

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Parsers of option values. Each takes the raw text, wherever it came from,
// and returns an error whose text begins with "not", so that the caller can
// put the value and its origin in front of it:
//
//	--frontend-port: "abc" is not a port number
//	proxy.ini: [zmq_proxy_opts] frontend_port = 70000: not in 0..65535

// maxSeconds bounds the registry timeouts, so that they fit a time.Duration.
const maxSeconds = 1<<31 - 1

func parsePort(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, errors.New("not a port number")
	}
	if n < 0 || n > 65535 {
		return 0, errors.New("not in 0..65535")
	}
	return n, nil
}

// parseBool accepts what oslo.config accepts for a BoolOpt, in any case.
func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "true", "yes", "on", "1":
		return true, nil
	case "false", "no", "off", "0":
		return false, nil
	}
	return false, errors.New("not a boolean (true/false, yes/no, on/off, 1/0)")
}

// parseInt parses a whole number of at least min.
func parseInt(s string, min int) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, errors.New("not an integer")
	}
	if n < min {
		return 0, fmt.Errorf("not at least %d", min)
	}
	return n, nil
}

// parseSize parses a size in bytes of at least min.
func parseSize(s string, min int64) (int64, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, errors.New("not a number of bytes")
	}
	if n < min {
		return 0, fmt.Errorf("not at least %d bytes", min)
	}
	return n, nil
}

// parseSeconds parses a whole number of seconds, at most maxSeconds.
func parseSeconds(s string) (time.Duration, error) {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, errors.New("not an integer number of seconds")
	}
	if n > maxSeconds {
		return 0, fmt.Errorf("not at most %d seconds", maxSeconds)
	}
	return time.Duration(n) * time.Second, nil
}

// parseListenAddr parses host:port for a listener: "" (off), the host may be
// empty (every interface), the port 0 (a random free port).
func parseListenAddr(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", errors.New("not host:port")
	}
	if _, err := parsePort(port); err != nil {
		return "", errors.New("not host:port with a port in 0..65535")
	}
	return net.JoinHostPort(host, port), nil
}

// parseDialAddr parses host:port for a peer to connect to: the host must be
// given and the port in 1..65535.
func parseDialAddr(s string) (string, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return "", errors.New("not host:port")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", errors.New("not host:port with a port in 1..65535")
	}
	return net.JoinHostPort(host, port), nil
}

// parseEndpoint normalises "host:port" or "tcp://host:port" to
// "tcp://host:port".
func parseEndpoint(s string) (string, error) {
	if scheme, rest, ok := strings.Cut(s, "://"); ok {
		if !strings.EqualFold(scheme, "tcp") {
			return "", errors.New("not host:port or tcp://host:port")
		}
		s = rest
	}
	addr, err := parseDialAddr(s)
	if err != nil {
		return "", errors.New("not host:port or tcp://host:port")
	}
	return "tcp://" + addr, nil
}

// parseEndpoints parses oslo.config's ListOpt: comma-separated, blanks
// around an item and empty items ignored. Each item is normalised by
// parseEndpoint.
func parseEndpoints(s string) ([]string, error) {
	var eps []string
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		ep, err := parseEndpoint(item)
		if err != nil {
			return nil, fmt.Errorf("not a list of endpoints: %q is %w", item, err)
		}
		eps = append(eps, ep)
	}
	return eps, nil
}

// registryMode says which registry, if any, the proxy uses.
type registryMode int

const (
	// registryEmbedded is an empty URL: the daemon starts an embedded
	// single-member etcd on loopback.
	registryEmbedded registryMode = iota
	// registryEtcd is zmq+etcd://host:port[,host:port...]/: an external etcd
	// cluster.
	registryEtcd
	// registryNone is the seed's zmq:// form: no registry at all.
	registryNone
)

// registryURL is the parsed --url.
type registryURL struct {
	Mode      registryMode
	Endpoints []string // host:port of each etcd member, for registryEtcd
}

func (r registryURL) String() string {
	switch r.Mode {
	case registryEmbedded:
		return "embedded etcd"
	case registryEtcd:
		return "etcd " + strings.Join(r.Endpoints, ",")
	case registryNone:
		return "none"
	}
	return fmt.Sprintf("registry(%d)", int(r.Mode))
}

const registryURLForm = "zmq+etcd://host:port[,host:port...]/"

// parseRegistryURL accepts "", zmq+etcd://host:port[,host:port...]/ (the
// trailing slash optional) and the seed's zmq:// form, whatever follows it.
func parseRegistryURL(s string) (registryURL, error) {
	if s == "" {
		return registryURL{Mode: registryEmbedded}, nil
	}
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return registryURL{}, fmt.Errorf("not a URL of the form %s", registryURLForm)
	}
	switch strings.ToLower(scheme) {
	case "zmq":
		return registryURL{Mode: registryNone}, nil
	case "zmq+etcd":
	default:
		return registryURL{}, fmt.Errorf("not a registry URL: scheme %q is neither zmq+etcd nor zmq", scheme)
	}
	hosts := strings.TrimSuffix(rest, "/")
	if strings.ContainsAny(hosts, "/?#@") {
		return registryURL{}, fmt.Errorf("not a URL of the form %s", registryURLForm)
	}
	var eps []string
	for h := range strings.SplitSeq(hosts, ",") {
		ep, err := parseDialAddr(h)
		if err != nil {
			return registryURL{}, fmt.Errorf("not a registry URL: %q is %w", h, err)
		}
		eps = append(eps, ep)
	}
	return registryURL{Mode: registryEtcd, Endpoints: eps}, nil
}
