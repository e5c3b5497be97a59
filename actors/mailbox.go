package actors

import (
	"runtime"
	"sync"

	"github.com/asynkron/protoactor-go/actor"
)

// maxInline is how many deliveries a reader goroutine handles for a socket
// actor before it hands the rest of the mailbox to a goroutine of its own.
const maxInline = 4

// socketMailbox is a socket actor's mailbox. It keeps protoactor's
// semantics (one message at a time, in order; system messages first; a
// suspended mailbox runs only system messages; a panic is escalated to
// the supervisor) and changes one thing: a delivery posted to an idle
// actor runs at once on the goroutine that posted it, instead of a
// goroutine started for it.
//
// At low load that is the hand-off that costs: a reader that posts a burst
// to the backend actor would start a goroutine, wake another thread to run
// it, and sleep. Here the reader runs the actor's Receive itself (the actor
// still owns its socket: nothing else runs its Receive meanwhile), so a
// message goes from one socket to the other on one goroutine.
//
// Only deliveries run inline: they do nothing that blocks (queue to peers,
// at most one non-blocking write each). Everything else (Started,
// Stopping, Restarting, SuspendMailbox, stopAccepting, socketFailed)
// runs on the dispatcher's goroutine, as in protoactor's mailbox: a
// Stopping run by a reader would wait, in Close, for that reader to end.
// Under load a reader hands over after maxInline deliveries, so no reader
// stops reading its own connection for long, and bursts from several
// readers are still handled in batches by one goroutine.
type socketMailbox struct {
	invoker    actor.MessageInvoker
	dispatcher actor.Dispatcher

	mu        sync.Mutex
	user      []any // user[head:] waits
	head      int
	system    []any
	running   bool // a goroutine (inline or the dispatcher's) runs the mailbox
	suspended bool
}

func newSocketMailbox() actor.Mailbox { return &socketMailbox{} }

// withSocketMailbox is the props option of the socket actors.
var withSocketMailbox = actor.WithMailbox(newSocketMailbox)

func (m *socketMailbox) RegisterHandlers(invoker actor.MessageInvoker, dispatcher actor.Dispatcher) {
	m.invoker, m.dispatcher = invoker, dispatcher
}

func (m *socketMailbox) Start() {}

func (m *socketMailbox) UserMessageCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.user) - m.head
}

func (m *socketMailbox) PostSystemMessage(msg any) {
	m.mu.Lock()
	m.system = append(m.system, msg)
	start := !m.running
	m.running = true
	m.mu.Unlock()
	if start {
		m.dispatcher.Schedule(m.run)
	}
}

func (m *socketMailbox) PostUserMessage(msg any) {
	m.mu.Lock()
	m.user = append(m.user, msg)
	if m.running || m.suspended {
		m.mu.Unlock()
		return
	}
	m.running = true
	_, inline := msg.(*deliver)
	inline = inline && len(m.user)-m.head == 1 && len(m.system) == 0
	m.mu.Unlock()
	if inline {
		m.runInline()
	} else {
		m.dispatcher.Schedule(m.run)
	}
}

// popUser takes the next user message; it returns nil when there is none.
// Called with mu held.
func (m *socketMailbox) popUser() any {
	if m.head == len(m.user) {
		return nil
	}
	msg := m.user[m.head]
	m.user[m.head] = nil
	m.head++
	if m.head == len(m.user) {
		m.user, m.head = m.user[:0], 0
	}
	return msg
}

// runInline runs deliveries on the posting goroutine while nothing else
// waits: at most maxInline, then the rest goes to the dispatcher.
func (m *socketMailbox) runInline() {
	for n := 0; ; n++ {
		m.mu.Lock()
		ok := false
		if n < maxInline && len(m.system) == 0 && !m.suspended && m.head < len(m.user) {
			_, ok = m.user[m.head].(*deliver)
		}
		if !ok {
			idle := len(m.system) == 0 && (m.suspended || m.head == len(m.user))
			m.running = !idle
			m.mu.Unlock()
			if !idle {
				m.dispatcher.Schedule(m.run)
			}
			return
		}
		msg := m.popUser()
		m.mu.Unlock()
		if !m.invoke(msg, false) {
			// Failed: the suspension (a system message) is queued now.
			m.dispatcher.Schedule(m.run)
			return
		}
	}
}

// run is the dispatcher's side, as protoactor's mailbox: system messages
// first, user messages unless suspended, yielding every Throughput
// messages, until the mailbox is empty.
func (m *socketMailbox) run() {
	t := m.dispatcher.Throughput()
	for i := 0; ; i++ {
		if i > t {
			i = 0
			runtime.Gosched()
		}
		m.mu.Lock()
		if len(m.system) > 0 {
			msg := m.system[0]
			m.system[0] = nil
			m.system = m.system[1:]
			switch msg.(type) {
			case *actor.SuspendMailbox:
				m.suspended = true
				m.mu.Unlock()
			case *actor.ResumeMailbox:
				m.suspended = false
				m.mu.Unlock()
			default:
				m.mu.Unlock()
				m.invoke(msg, true)
			}
			continue
		}
		var msg any
		if !m.suspended {
			msg = m.popUser()
		}
		if msg == nil {
			m.running = false
			m.mu.Unlock()
			return
		}
		m.mu.Unlock()
		m.invoke(msg, false)
	}
}

// invoke runs one message; a panic goes to the supervisor (which suspends
// this mailbox) and invoke reports false.
func (m *socketMailbox) invoke(msg any, system bool) (ok bool) {
	defer func() {
		if r := recover(); r != nil {
			m.invoker.EscalateFailure(r, msg)
			ok = false
		}
	}()
	if system {
		m.invoker.InvokeSystemMessage(msg)
	} else {
		m.invoker.InvokeUserMessage(msg)
	}
	return true
}
