package actors

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/zmq-proxy/zmq-proxy/internal/etcdserver"
	"github.com/zmq-proxy/zmq-proxy/registry"
)

// The proxy's registry setup, all of it: connecting to etcd (or the Redis
// matchmaker, redis.go) before the sockets bind, spawning the registrar
// once their addresses are known, and letting go of the registry when
// the proxy closes.

// openRegistry connects to etcd: the cluster named in the configuration,
// or the etcd answering on the local address, or an embedded one started
// there.
func (p *Proxy) openRegistry() error {
	rc := p.cfg.Registry
	if rc.Disabled {
		p.log.Info("registry disabled")
		return nil
	}
	if rc.Redis.Addr != "" {
		p.openRedis()
		return nil
	}
	endpoints := rc.Endpoints
	if len(endpoints) == 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		eps, srv, err := etcdserver.Local(ctx, etcdserver.Options{
			ClientAddr: rc.EmbeddedAddr,
			DataDir:    filepath.Join(rc.StateDir, "etcd"),
			Logger:     p.log,
		})
		if err != nil {
			return err
		}
		endpoints, p.etcd = eps, srv
	}
	cli, err := registry.NewClient(registry.ClientConfig{
		Endpoints: endpoints,
		Username:  rc.Username, Password: rc.Password,
		CACert: rc.CACert, Cert: rc.Cert, Key: rc.Key,
		Background: true, // it binds and serves while etcd is down, and registers when it answers
	})
	if err != nil {
		return fmt.Errorf("etcd client: %w", err)
	}
	p.etcdCli = cli
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
	return &registrarSpec{
		cfg: registry.Config{Client: p.etcdCli, Prefix: rc.Prefix, TTL: rc.TTL, Logger: p.log},
		rec: rec,
		log: p.log,
	}
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

// startRegistrar spawns the registrar actor under the supervisor, once
// the sockets are bound and their addresses known: the record is
// registered from then on.
func (p *Proxy) startRegistrar() error {
	cfg := p.cfg
	if p.etcdCli != nil {
		// Spawned before New returns, so that Close always finds it.
		done := make(chan error, 1)
		p.system.Root.Send(p.sup, &spawnChild{childSpec{registrarName, registrarProps(p.registrarSpec())}, done})
		if err := <-done; err != nil {
			return err
		}
		p.registrar = p.system.NewLocalPID(supervisorName + "/" + registrarName)
	}
	if p.redis != nil && cfg.Kind != KindLocalPublisher {
		done := make(chan error, 1)
		p.system.Root.Send(p.sup, &spawnChild{childSpec{registrarName, redisRegistrarProps(p.redisRegistrarSpec())}, done})
		if err := <-done; err != nil {
			return err
		}
		p.registrar = p.system.NewLocalPID(supervisorName + "/" + registrarName)
	}
	return nil
}

// closeRegistry lets go of the registry, once the actors are stopped:
// with an embedded etcd, its watchers catch up first (they must see the
// record go before the etcd that held it goes; at most a second); then
// the etcd client closes, then the embedded etcd if this process started
// one.
func (p *Proxy) closeRegistry() error {
	if p.etcd != nil && p.etcdCli != nil {
		p.letWatchersCatchUp()
	}
	if p.etcdCli != nil {
		p.etcdCli.Close()
	}
	if p.redis != nil {
		p.redis.Close()
	}
	if p.etcd != nil {
		if err := p.etcd.Close(); err != nil {
			return fmt.Errorf("stop embedded etcd: %w", err)
		}
	}
	return nil
}

// Registered reports whether the proxy's record is in etcd now (false
// when the registry is disabled).
func (p *Proxy) Registered() bool {
	if p.etcdCli == nil && (p.redis == nil || p.cfg.Kind == KindLocalPublisher) {
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

// letWatchersCatchUp waits, a second at most, until the embedded etcd's
// watch machinery has sent everything up to the current revision: a watch
// of this process asks for a progress notification, which etcd sends once
// the stream has caught up; the other synced watchers (a "zmq-proxy list
// -w", a local proxy) are notified of the same events in the same pass.
func (p *Proxy) letWatchersCatchUp() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	prefix := p.cfg.Registry.Prefix
	if prefix == "" {
		prefix = registry.DefaultPrefix
	}
	resp, err := p.etcdCli.Get(ctx, registry.Key(prefix, ""), clientv3.WithCountOnly())
	if err != nil {
		return
	}
	wctx := clientv3.WithRequireLeader(ctx) // the stream RequestProgress asks on
	wch := p.etcdCli.Watch(wctx, registry.Key(prefix, ""), clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1))
	if err := p.etcdCli.RequestProgress(wctx); err != nil {
		return
	}
	for wr := range wch {
		if wr.IsProgressNotify() || wr.Err() != nil {
			return
		}
	}
}
