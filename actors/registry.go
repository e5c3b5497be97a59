package actors

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/zmq-proxy/zmq-proxy/registry"
	redismm "github.com/zmq-proxy/zmq-proxy/registry/redis"
)

// The proxy's registry setup, all of it: opening the registry (etcd or
// the Redis matchmaker, behind registry.Registry) before the sockets bind,
// registering once their addresses are known (the registrar actor,
// registrar.go, holds the registration), and letting go of the registry
// when the proxy closes.

// openRegistry opens the registry the configuration names (registry.Open:
// the Redis matchmaker, an etcd cluster, or the etcd answering on the
// local address, or an embedded one started there). Neither waits for
// the registry: the proxy binds and serves while it is down, and
// registers when it answers.
func (p *Proxy) openRegistry() error {
	rc := p.cfg.Registry
	if rc.Disabled {
		p.log.Info("registry disabled")
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	reg, err := registry.Open(ctx, registry.OpenConfig{
		Etcd: registry.ClientConfig{
			Endpoints: rc.Endpoints,
			Username:  rc.Username, Password: rc.Password,
			CACert: rc.CACert, Cert: rc.Cert, Key: rc.Key,
			Background: true,
		},
		EmbeddedAddr:    rc.EmbeddedAddr,
		EmbeddedDataDir: filepath.Join(rc.StateDir, "etcd"),
		Redis:           redismm.Config{Addr: rc.Redis.Addr, Password: rc.Redis.Password, DB: rc.Redis.DB, Logger: p.log},
		Options:         registry.Options{Prefix: rc.Prefix, Poll: rc.Redis.Poll, Update: rc.Redis.Update, Logger: p.log},
	})
	if err != nil {
		return err
	}
	p.registry = reg
	return nil
}

// startRegistrar registers the proxy's record, built from the bound
// addresses, and spawns the registrar actor that holds the registration.
// A registry with no record for this kind of proxy (the Redis matchmaker
// and a local publisher proxy) is told of nothing; a disabled one, too.
func (p *Proxy) startRegistrar() error {
	if p.registry == nil {
		return nil // registry disabled
	}
	spec := p.registrarSpec()
	first, err := p.registry.RegisterProxy(spec.rec, spec.opts)
	if errors.Is(err, registry.ErrUnsupported) {
		p.log.Info("registry: the proxy is not registered", "registry", p.registry.String(), "reason", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("registrar: %w", err)
	}
	spec.first = first
	// Spawned before New returns, so that Close always finds it.
	done := make(chan error, 1)
	p.system.Root.Send(p.sup, &spawnChild{childSpec{registrarName, registrarProps(spec)}, done})
	if err := <-done; err != nil {
		first.Close()
		return err
	}
	p.registrar = p.system.NewLocalPID(supervisorName + "/" + registrarName)
	return nil
}

// registrarSpec builds this proxy's record from the bound addresses.
func (p *Proxy) registrarSpec() *registrarSpec {
	rc := p.cfg.Registry
	addrs := p.Addrs()
	name := rc.Name
	if name == "" {
		name, _ = os.Hostname()
	}
	rec := registry.Record{
		ID:         proxyIdentity(name),
		Kind:       p.cfg.Kind.String(),
		Host:       name,
		Frontend:   advertise(addrs.Frontend, name),
		Backend:    advertise(addrs.Backend, name),
		Publisher:  advertise(addrs.Publisher, name),
		Started:    p.started.UTC(),
		Generation: p.started.UnixNano(),
	}
	return &registrarSpec{reg: p.registry, rec: rec, opts: registry.RegisterOptions{TTL: rc.TTL, Logger: p.log}, log: p.log}
}

// advertise turns a bound address into one peers can dial: a socket bound
// to every interface is advertised under the host name.
func advertise(bound, name string) string {
	if bound == "" {
		return ""
	}
	hostport := strings.TrimPrefix(bound, "tcp://")
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return bound
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = name
	}
	return "tcp://" + net.JoinHostPort(host, port)
}

// closeRegistry lets go of the registry, once the actors are stopped
// (registry.Registry.Close: with an embedded etcd, its watchers catch up
// first, then the client closes, then the embedded etcd).
func (p *Proxy) closeRegistry() error {
	if p.registry == nil {
		return nil
	}
	return p.registry.Close()
}

// Registered reports whether the proxy's record is in the registry now
// (false when the registry is disabled or keeps no record of this proxy).
func (p *Proxy) Registered() bool {
	if p.registrar == nil {
		return false
	}
	reply := make(chan bool, 1)
	p.system.Root.Send(p.system.NewLocalPID(supervisorName+"/"+registrarName), &registeredQuery{reply})
	select {
	case ok := <-reply:
		return ok
	case <-time.After(time.Second):
		return false
	}
}
