package actors

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	redismm "github.com/zmq-proxy/zmq-proxy/registry/redis"
)

// RedisConfig says where oslo.messaging's Redis matchmaker is
// (docs/protocol.md, "The Redis matchmaker").
type RedisConfig struct {
	Addr     string // host:port; "" = not Redis
	Password string
	DB       int
	// Update is how often the records are written again (oslo's
	// zmq_target_update); default RegistryConfig.TTL/3.
	Update time.Duration
	// Poll is how often a local proxy reads PUBLISHERS; default 1 s.
	Poll time.Duration
}

// defaultRedisPoll is how often a local proxy reads PUBLISHERS: Redis has
// no watch for a set's members, and one SMEMBERS and a TTL per central
// proxy each second is cheap.
const defaultRedisPoll = time.Second

// openRedis makes the matchmaker client. It does not connect: the
// registrar (or the local proxy's reader) does, and goes on while Redis is
// down, so that routing never waits for the registry.
func (p *Proxy) openRedis() {
	rc := p.cfg.Registry.Redis
	p.redis = redismm.New(redismm.Config{Addr: rc.Addr, Password: rc.Password, DB: rc.DB, Logger: p.log})
	p.log.Info("registry: redis matchmaker", "redis", rc.Addr, "db", rc.DB)
}

// redisEntries are what a central proxy registers, as oslo.messaging's
// proxy does: PUBLISHERS <- "<publisher>,<frontend>" (the publisher empty
// in router-only mode, where there is none), ROUTERS <- "<backend>", or
// the frontend of a single-router proxy. Addresses are host:port, a socket
// bound to every interface advertised under the host name.
func (p *Proxy) redisEntries() []redismm.Entry {
	name := p.cfg.Registry.Name
	if name == "" {
		name, _ = os.Hostname()
	}
	hostport := func(bound string) string { return strings.TrimPrefix(advertise(bound, name), "tcp://") }
	fe := hostport(p.addrs.Frontend)
	routers := fe
	if p.addrs.Backend != "" {
		routers = hostport(p.addrs.Backend)
	}
	return []redismm.Entry{
		{Key: redismm.PublishersKey, Member: hostport(p.addrs.Publisher) + "," + fe},
		{Key: redismm.RoutersKey, Member: routers},
	}
}

// redisRegistrarSpec is what survives the Redis registrar actor's restarts.
type redisRegistrarSpec struct {
	cfg redismm.RegistrarConfig
	log *slog.Logger
}

func (p *Proxy) redisRegistrarSpec() *redisRegistrarSpec {
	rc := p.cfg.Registry
	ttl := rc.TTL
	if ttl < time.Second {
		ttl = time.Second
	}
	return &redisRegistrarSpec{
		cfg: redismm.RegistrarConfig{
			Matchmaker: p.redis, Entries: p.redisEntries(),
			TTL: ttl, Update: rc.Redis.Update, Logger: p.log,
		},
		log: p.log,
	}
}

// redisRegistrarActor holds the proxy's records in Redis: written while
// the actor lives (redismm.Registrar rewrites them every
// zmq_target_update and after an outage, on its own goroutine), removed
// when it stops. It is the supervisor's last child, so it stops first.
type redisRegistrarActor struct {
	spec *redisRegistrarSpec
	reg  *redismm.Registrar
}

func redisRegistrarProps(spec *redisRegistrarSpec) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor { return &redisRegistrarActor{spec: spec} })
}

func (a *redisRegistrarActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		reg, err := redismm.NewRegistrar(a.spec.cfg)
		if err != nil {
			panic(fmt.Errorf("redis registrar: %w", err))
		}
		a.reg = reg
	case *actor.Stopping, *actor.Restarting:
		if a.reg != nil {
			_ = a.reg.Close() // logs its own failure: the records then expire
			a.reg = nil
		}
	case *actor.Stopped:
	case *registeredQuery:
		msg.reply <- a.reg != nil && a.reg.Registered()
	default:
		a.spec.log.Warn("unexpected message", "actor", registrarName, "type", fmt.Sprintf("%T", msg))
	}
}

// followRedis tells the subscriber actor the central publishers found in
// Redis (the first element of each live PUBLISHERS member), each time
// they change. It runs beside the actor, which starts and stops it.
func (a *subscriberActor) followRedis(ctx context.Context, root *actor.RootContext, self *actor.PID) {
	defer close(a.done)
	every := a.spec.redisPoll
	if every <= 0 {
		every = defaultRedisPoll
	}
	_ = a.spec.redis.Follow(ctx, redismm.PublishersKey, every, func(members []string) {
		var eps []string
		for _, m := range members {
			pub, _, _ := strings.Cut(m, ",")
			if _, _, err := net.SplitHostPort(pub); err != nil {
				continue // a router-only proxy publishes nothing
			}
			eps = append(eps, "tcp://"+pub)
		}
		root.Send(self, &setPublishers{eps})
	})
}
