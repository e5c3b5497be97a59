package actors

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
)

// mailboxActor records what reaches it. A delivery whose kind is
// deliverAck blocks until release is closed; deliverRepublish panics.
type mailboxActor struct {
	started *atomic.Int32
	stopper chan string // if set, Stopping sends it the goroutine it runs on
	release chan struct{}
	entered chan struct{} // gets a token when a deliverAck starts
	mu      *sync.Mutex
	got     *[]int    // batch counts of the deliveries handled, in order
	gids    *[]string // the goroutine that handled each
}

func (a *mailboxActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Started:
		a.started.Add(1)
	case *actor.Stopping:
		if a.stopper != nil {
			a.stopper <- goroutineID()
		}
	case *deliver:
		switch msg.kind {
		case deliverAck:
			a.entered <- struct{}{}
			<-a.release
		case deliverRepublish:
			panic("injected failure")
		}
		a.mu.Lock()
		*a.got = append(*a.got, len(msg.routed))
		*a.gids = append(*a.gids, goroutineID())
		a.mu.Unlock()
	}
}

type mailboxProbe struct {
	system *actor.ActorSystem
	pid    *actor.PID
	a      mailboxActor
	got    []int
	gids   []string
	mu     sync.Mutex
}

func newMailboxProbe(t *testing.T) *mailboxProbe {
	t.Helper()
	m := &mailboxProbe{system: newActorSystem(testutil.Quiet())}
	t.Cleanup(m.system.Shutdown)
	m.a = mailboxActor{started: new(atomic.Int32), release: make(chan struct{}), entered: make(chan struct{}, 1), mu: &m.mu, got: &m.got, gids: &m.gids}
	props := actor.PropsFromProducer(func() actor.Actor { a := m.a; return &a }, withSocketMailbox)
	m.pid = m.system.Root.Spawn(props)
	testutil.CheckFor(t, wait, func() error {
		if n := m.a.started.Load(); n != 1 {
			return fmt.Errorf("started %d times, want 1", n)
		}
		return nil
	})
	return m
}

// post sends a delivery numbered n (carried in routed, which the actor
// only counts).
func (m *mailboxProbe) post(kind deliverKind, n int) {
	var r routedSet
	for i := range n {
		r = r.mark(i, n)
	}
	m.system.Root.Send(m.pid, &deliver{kind: kind, routed: r})
}

// goroutineID is the running goroutine's number, from its stack header.
func goroutineID() string {
	buf := make([]byte, 64)
	buf = buf[:runtime.Stack(buf, false)]
	return strings.Fields(string(buf))[1]
}

func (m *mailboxProbe) handled() []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]int(nil), m.got...)
}

// A delivery to an idle socket actor is handled on the goroutine that
// posts it: when Send returns, it has run (protoactor's own mailbox starts
// a goroutine for it, so this fails with it).
func TestSocketMailboxHandlesIdleDeliveryInline(t *testing.T) {
	m := newMailboxProbe(t)
	for i := 1; i <= 3; i++ {
		m.post(deliverDirect, i)
		if got := m.handled(); len(got) != i {
			t.Fatalf("after Send %d returned: %d deliveries handled, want %d (inline)", i, len(got), i)
		}
	}
}

// A delivery posted while the actor is busy waits its turn: the poster
// does not block, and every delivery is handled once, in order.
func TestSocketMailboxQueuesWhileBusy(t *testing.T) {
	m := newMailboxProbe(t)
	blocked := make(chan struct{})
	go func() {
		defer close(blocked)
		m.post(deliverAck, 1) // blocks inside Receive, on this goroutine
	}()
	select { // the first delivery is being handled
	case <-m.a.entered:
	case <-time.After(wait):
		t.Fatal("the first delivery was not handled")
	}
	for i := 2; i <= 2+2*maxInline; i++ {
		m.post(deliverDirect, i) // returns at once: the actor is busy
	}
	if got := m.handled(); len(got) != 0 {
		t.Fatalf("handled %v while the first delivery blocks, want none", got)
	}
	close(m.a.release)
	<-blocked
	want := make([]int, 0, 2+2*maxInline)
	for i := 1; i <= 2+2*maxInline; i++ {
		want = append(want, i)
	}
	testutil.CheckFor(t, wait, func() error {
		if got := m.handled(); fmt.Sprint(got) != fmt.Sprint(want) {
			return fmt.Errorf("handled %v, want %v", got, want)
		}
		return nil
	})
	// The poster handled its own delivery and at most maxInline in all;
	// the rest went to the mailbox's goroutine.
	m.mu.Lock()
	defer m.mu.Unlock()
	byPoster := 0
	for _, g := range m.gids {
		if g == m.gids[0] {
			byPoster++
		}
	}
	if byPoster > maxInline {
		t.Fatalf("the posting goroutine handled %d deliveries, want at most maxInline (%d)", byPoster, maxInline)
	}
}

// System messages never run on the poster's goroutine: a Stopping that
// waits for its poster would deadlock otherwise (a reader stopping the
// socket it reads).
func TestSocketMailboxStopsOnItsOwnGoroutine(t *testing.T) {
	m := newMailboxProbe(t)
	m.a.stopper = make(chan string, 1)
	// The actor of newMailboxProbe copied m.a before stopper was set:
	// spawn one that has it.
	props := actor.PropsFromProducer(func() actor.Actor { a := m.a; return &a }, withSocketMailbox)
	pid := m.system.Root.Spawn(props)
	testutil.CheckFor(t, wait, func() error {
		if n := m.a.started.Load(); n != 2 {
			return fmt.Errorf("started %d times, want 2", n)
		}
		return nil
	})
	poster := make(chan string, 1)
	go func() {
		poster <- goroutineID()
		m.system.Root.Stop(pid) // posts the stop on this goroutine
	}()
	p := <-poster
	select {
	case g := <-m.a.stopper:
		if g == p {
			t.Fatalf("Stopping ran on its poster's goroutine %s", p)
		}
	case <-time.After(wait):
		t.Fatal("the actor did not stop")
	}
}

// A delivery that panics inline goes to the supervisor like any failure:
// the actor restarts and handles what comes next.
func TestSocketMailboxInlineFailureRestarts(t *testing.T) {
	m := newMailboxProbe(t)
	m.post(deliverRepublish, 1) // panics on this goroutine; recovered by the mailbox
	testutil.CheckFor(t, wait, func() error {
		if n := m.a.started.Load(); n != 2 {
			return fmt.Errorf("started %d times, want 2 (restarted once)", n)
		}
		return nil
	})
	m.post(deliverDirect, 7)
	testutil.CheckFor(t, wait, func() error {
		if got := m.handled(); fmt.Sprint(got) != "[7]" {
			return fmt.Errorf("handled %v after the restart, want [7]", got)
		}
		return nil
	})
}
