package actors

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// SupervisorName is the name of the actor that owns the socket actors.
const SupervisorName = "proxy"

// Restart policy of the socket actors. ergo's default bound is 5 restarts
// in 5 s; a socket that cannot bind for a minute is better handed to the
// process supervisor (systemd) than retried for ever.
const (
	restartMinBackoff = 100 * time.Millisecond
	restartMaxBackoff = 10 * time.Second
	restartMax        = 10
	restartWindow     = time.Minute
)

// backoffStrategy restarts a failed child alone (one-for-one), after a
// delay that doubles with each failure in the window, capped; past
// maxRestarts in the window it stops the child and calls giveUp.
// protoactor's own "exponential" strategy grows linearly and has no cap
// and no bound on restarts, hence this one.
type backoffStrategy struct {
	minDelay    time.Duration
	maxDelay    time.Duration
	maxRestarts int
	window      time.Duration
	log         *slog.Logger
	// failed, if set, is told of every failure at once, before the
	// backoff: the child's mailbox is suspended from now on.
	failed func(child *actor.PID)
	giveUp func(child *actor.PID, reason any)
	// after runs the restart after the backoff (the proxy's gate, which
	// Close shuts); nil = time.AfterFunc.
	after func(time.Duration, func()) bool
}

var _ actor.SupervisorStrategy = (*backoffStrategy)(nil)

func (s *backoffStrategy) HandleFailure(_ *actor.ActorSystem, sup actor.Supervisor, child *actor.PID, rs *actor.RestartStatistics, reason, _ any) {
	if s.failed != nil {
		s.failed(child)
	}
	if rs.NumberOfFailures(s.window) == 0 {
		rs.Reset()
	}
	rs.Fail()
	n := rs.NumberOfFailures(s.window)
	if n > s.maxRestarts {
		s.log.Error("socket actor failed too often, giving up", "actor", child.Id, "failures", n, "window", s.window, "err", reason)
		sup.StopChildren(child)
		if s.giveUp != nil {
			s.giveUp(child, reason)
		}
		return
	}
	delay := backoffDelay(s.minDelay, s.maxDelay, n)
	s.log.Warn("socket actor failed, restarting", "actor", child.Id, "err", reason, "failures", n, "restart_in", delay)
	restart := func() { sup.RestartChildren(child) }
	if s.after == nil {
		time.AfterFunc(delay, restart)
	} else if !s.after(delay, restart) {
		s.log.Info("socket actor not restarted: shutting down", "actor", child.Id)
	}
}

// backoffDelay is min·2^(n-1), capped at max.
func backoffDelay(lo, hi time.Duration, n int) time.Duration {
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}

// supervisorActor spawns the socket actors as its children; the strategy in
// its props restarts them.
type supervisorActor struct {
	children []childSpec
	log      *slog.Logger
}

type childSpec struct {
	name  string
	props *actor.Props
}

func supervisorProps(children []childSpec, strategy actor.SupervisorStrategy, log *slog.Logger) *actor.Props {
	return actor.PropsFromProducer(func() actor.Actor {
		return &supervisorActor{children: children, log: log}
	}, actor.WithSupervisor(strategy))
}

func (a *supervisorActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		for _, c := range a.children {
			if _, err := ctx.SpawnNamed(c.props, c.name); err != nil {
				panic(fmt.Errorf("spawn %s: %w", c.name, err))
			}
		}
	case *spawnChild:
		_, err := ctx.SpawnNamed(msg.child.props, msg.child.name)
		if err != nil {
			err = fmt.Errorf("spawn %s: %w", msg.child.name, err)
		}
		msg.done <- err
	case *actor.Stopping, *actor.Stopped, *actor.Restarting, *actor.Terminated:
	default:
		a.log.Warn("unexpected message", "actor", SupervisorName, "type", fmt.Sprintf("%T", msg))
	}
}
