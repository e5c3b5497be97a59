package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"

	redismm "github.com/zmq-proxy/zmq-proxy/registry/redis"
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

// ParseDialAddr parses host:port for a peer to connect to: the host must be
// given and the port in 1..65535.
func ParseDialAddr(s string) (string, error) {
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
	addr, err := ParseDialAddr(s)
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

// RegistryMode says which registry, if any, the proxy uses.
type RegistryMode int

const (
	// RegistryEmbedded is an empty URL: the daemon starts an embedded
	// single-member etcd on loopback.
	RegistryEmbedded RegistryMode = iota
	// RegistryEtcd is zmq+etcd://host:port[,host:port...]/: an external etcd
	// cluster.
	RegistryEtcd
	// RegistryNone is oslo.messaging's zmq:// form: no registry at all.
	RegistryNone
	// RegistryRedis is zmq+redis://[:password@]host:port[/db]:
	// oslo.messaging's Redis matchmaker.
	RegistryRedis
)

// RegistryURL is the parsed --url.
type RegistryURL struct {
	Mode      RegistryMode
	Endpoints []string // host:port of each etcd member, for RegistryEtcd

	// For RegistryRedis: the address once completed from
	// [matchmaker_redis] (useTransportURL), the password and database.
	RedisAddr     string
	RedisPassword string
	RedisDB       int
	redisHost     string // as in the URL; "" = from [matchmaker_redis]
	redisPort     int    // as in the URL; 0 = from [matchmaker_redis]
}

func (r RegistryURL) String() string {
	switch r.Mode {
	case RegistryEmbedded:
		return "embedded etcd"
	case RegistryEtcd:
		return "etcd " + strings.Join(r.Endpoints, ",")
	case RegistryNone:
		return "none"
	case RegistryRedis:
		return "redis " + r.RedisAddr
	}
	return fmt.Sprintf("registry(%d)", int(r.Mode))
}

const registryURLForm = "zmq+etcd://host:port[,host:port...]/ or zmq+redis://[:password@]host:port[/db]"

// parseRegistryURL accepts "", zmq+etcd://host:port[,host:port...]/ (the
// trailing slash optional), zmq+redis://[:password@]host:port[/db] (any
// part may be left out) and oslo.messaging's zmq:// form, whatever follows
// it.
func parseRegistryURL(s string) (RegistryURL, error) {
	if s == "" {
		return RegistryURL{Mode: RegistryEmbedded}, nil
	}
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return RegistryURL{}, fmt.Errorf("not a URL of the form %s", registryURLForm)
	}
	switch strings.ToLower(scheme) {
	case "zmq":
		return RegistryURL{Mode: RegistryNone}, nil
	case "zmq+redis":
		host, port, password, db, err := redismm.ParseURL(s)
		if err != nil {
			return RegistryURL{}, errors.New("not a URL of the form zmq+redis://[:password@]host:port[/db]")
		}
		return RegistryURL{Mode: RegistryRedis, RedisPassword: password, RedisDB: db, redisHost: host, redisPort: port}, nil
	case "zmq+etcd":
	default:
		return RegistryURL{}, fmt.Errorf("not a registry URL: scheme %q is none of zmq+etcd, zmq+redis, zmq", scheme)
	}
	hosts := strings.TrimSuffix(rest, "/")
	if strings.ContainsAny(hosts, "/?#@") {
		return RegistryURL{}, fmt.Errorf("not a URL of the form %s", registryURLForm)
	}
	var eps []string
	for h := range strings.SplitSeq(hosts, ",") {
		ep, err := ParseDialAddr(h)
		if err != nil {
			return RegistryURL{}, fmt.Errorf("not a registry URL: %q is %w", h, err)
		}
		eps = append(eps, ep)
	}
	return RegistryURL{Mode: RegistryEtcd, Endpoints: eps}, nil
}

// lookupEnv is the value of the environment variable name; "" when name is
// "", or the variable is not set or empty.
func lookupEnv(name string) string {
	if name == "" {
		return ""
	}
	return os.Getenv(name)
}

// parseName parses the host name a proxy registers under: one word, no "/"
// (the record's ID is "name/random").
func parseName(s string) (string, error) {
	bad := func(r rune) bool { return r == '/' || unicode.IsSpace(r) || !unicode.IsPrint(r) }
	if s == "" || strings.ContainsFunc(s, bad) {
		return "", errors.New(`not a host name (one word, without "/")`)
	}
	return s, nil
}

// parseDir parses a directory that need not exist yet: it is made absolute,
// so that it does not depend on the working directory. "" is none.
func parseDir(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	abs, err := filepath.Abs(s)
	if err != nil {
		return "", fmt.Errorf("not a usable path: %w", err)
	}
	return abs, nil
}

// parsePrefix parses an etcd key prefix: it starts and ends with "/", so that
// one prefix is never a prefix of another one's keys.
func parsePrefix(s string) (string, error) {
	if !strings.HasPrefix(s, "/") || !strings.HasSuffix(s, "/") {
		return "", errors.New(`not a key prefix that starts and ends with "/"`)
	}
	return s, nil
}

// parseFile parses the name of a file that must exist and be readable now,
// so that a mistake shows at start, not at the first TLS handshake. "" is
// none.
func parseFile(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	f, err := os.Open(s)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // the path is in the message already
		}
		return "", fmt.Errorf("not a readable file: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || fi.IsDir() {
		return "", errors.New("not a readable file: a directory")
	}
	return s, nil
}

// parseTimeout parses a positive duration: "5s", "1m30s", or a number of
// seconds.
func parseTimeout(s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		n, nerr := strconv.Atoi(s)
		if nerr != nil || n > maxSeconds {
			return 0, errors.New("not a duration (5s, 1m, or a number of seconds)")
		}
		d = time.Duration(n) * time.Second
	}
	if d <= 0 {
		return 0, errors.New("not a positive duration")
	}
	return d, nil
}

// defaultStateDir is where an embedded etcd keeps its data unless told:
// systemd's StateDirectory= (the first one, if several), else the XDG state
// directory, else ~/.local/state/zmq-proxy. It is "" when none of them can
// be found; that is an error only for a proxy that embeds etcd.
func defaultStateDir() (string, error) {
	if d, _, _ := strings.Cut(os.Getenv("STATE_DIRECTORY"), ":"); d != "" {
		return d, nil
	}
	// The XDG spec: a relative path in $XDG_STATE_HOME is to be ignored.
	if d := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, ProgName), nil
	}
	if home, err := os.UserHomeDir(); err == nil && home != "" {
		return filepath.Join(home, ".local", "state", ProgName), nil
	}
	return "", nil
}
