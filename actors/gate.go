package actors

import (
	"sync"
	"time"
)

// gate lets the proxy's background work start only while the proxy is
// open: the supervisor's restart timers and the HTTP server. Close shuts
// it first, so that no restart fires into an actor system that is going
// away, then waits for what it let start.
type gate struct {
	mu     sync.Mutex
	shut   bool
	timers map[*time.Timer]struct{}
	wg     sync.WaitGroup
}

// afterFunc runs f after d unless the gate is shut by then; it reports
// false, and does nothing, if the gate is shut already.
func (g *gate) afterFunc(d time.Duration, f func()) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.shut {
		return false
	}
	if g.timers == nil {
		g.timers = make(map[*time.Timer]struct{})
	}
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		g.mu.Lock()
		if g.shut {
			g.mu.Unlock()
			return
		}
		delete(g.timers, t) // t is set: the gate's lock was held until it was
		g.wg.Add(1)
		g.mu.Unlock()
		defer g.wg.Done()
		f()
	})
	g.timers[t] = struct{}{}
	return true
}

// start runs f on a goroutine of its own unless the gate is shut; wait
// waits for it.
func (g *gate) start(f func()) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.shut {
		return false
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		f()
	}()
	return true
}

// close shuts the gate: nothing starts any more, and pending timers are
// stopped. Safe to call twice.
func (g *gate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.shut = true
	for t := range g.timers {
		t.Stop()
	}
	g.timers = nil
}

// wait waits for what the gate let start (call it after close, and after
// telling long-running work to end).
func (g *gate) wait() { g.wg.Wait() }
