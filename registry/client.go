package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// ClientConfig says how to reach etcd.
type ClientConfig struct {
	Endpoints []string // host:port or http(s)://host:port
	// Username and Password for etcd's authentication, if enabled.
	Username, Password string
	// CACert, Cert and Key are PEM files for TLS; CACert alone verifies
	// the server, Cert and Key add a client certificate.
	CACert, Cert, Key string
	// DialTimeout bounds how long NewClient waits for etcd to answer:
	// the connection, the login with Username, one request; default
	// DefaultDialTimeout.
	DialTimeout time.Duration
	// Background makes NewClient return at once, without waiting for
	// etcd: the client connects in the background and calls fail until
	// etcd answers. For a process that must start while etcd is down (a
	// proxy binds its ports, and registers when etcd comes back). With a
	// Username, the login still waits, at most DialTimeout.
	Background bool
}

// DefaultDialTimeout is how long NewClient waits for etcd unless told.
const DefaultDialTimeout = 5 * time.Second

// probeKey is what NewClient asks etcd for (a count, of nothing in
// particular): any answer, a refusal included, shows that etcd is there.
const probeKey = "/zmq-proxy-probe"

// NewClient makes an etcd client and waits until etcd answers, at most
// cfg.DialTimeout (default 5 s). When no endpoint answers in time it
// returns an error that names the endpoints and wraps ErrNoAnswer and
// context.DeadlineExceeded. An etcd that answers but refuses (a wrong
// password, no permission) is etcd's error, as is; with Background, only
// the login, if any, is waited for.
func NewClient(cfg ClientConfig) (*clientv3.Client, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, fmt.Errorf("%w: no etcd endpoint", ErrBadURL)
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	c := clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: cfg.DialTimeout,
		Username:    cfg.Username,
		Password:    cfg.Password,
		// etcd's client logs every retry through zap; our logs say what
		// matters once.
		Logger:               zap.NewNop(),
		DialKeepAliveTime:    5 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second,
	}
	if cfg.CACert != "" || cfg.Cert != "" || cfg.Key != "" {
		t, err := tlsConfig(cfg)
		if err != nil {
			return nil, err
		}
		c.TLS = t
	}
	noAnswer := func(err error) error {
		return fmt.Errorf("%w at %s within %s: %w", ErrNoAnswer, strings.Join(cfg.Endpoints, ","), cfg.DialTimeout, err)
	}
	cli, err := clientv3.New(c) // with a Username, it logs in, within DialTimeout
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, noAnswer(err)
		}
		return nil, err
	}
	if cfg.Background {
		return cli, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.DialTimeout)
	defer cancel()
	_, err = cli.Get(ctx, probeKey, clientv3.WithCountOnly())
	if err != nil && ctx.Err() != nil {
		cli.Close()
		return nil, noAnswer(err)
	}
	return cli, nil
}

func tlsConfig(cfg ClientConfig) (*tls.Config, error) {
	t := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CACert != "" {
		pem, err := os.ReadFile(cfg.CACert)
		if err != nil {
			return nil, fmt.Errorf("etcd CA certificate: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("etcd CA certificate %s: no PEM certificate in it", cfg.CACert)
		}
		t.RootCAs = pool
	}
	if (cfg.Cert == "") != (cfg.Key == "") {
		return nil, fmt.Errorf("etcd client certificate: give both the certificate and the key")
	}
	if cfg.Cert != "" {
		pair, err := tls.LoadX509KeyPair(cfg.Cert, cfg.Key)
		if err != nil {
			return nil, fmt.Errorf("etcd client certificate: %w", err)
		}
		t.Certificates = []tls.Certificate{pair}
	}
	return t, nil
}
