package rpc

import (
	"cmp"
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zmq-proxy/zmq-proxy/registry"
	"github.com/zmq-proxy/zmq-proxy/transport"
)

// link is one DEALER connection to one proxy's ROUTER. A client has one
// per central proxy's frontend, a server one per backend, so that a
// message can be sent through a chosen proxy, and a retry through another.
type link struct {
	proxy    string // the proxy record's ID
	endpoint string
	d        *transport.Dealer
	up       atomic.Bool
	retired  atomic.Bool   // the proxy left the registry: nothing new is sent through it
	gone     chan struct{} // closed when a retired link's connection ends
	goneOnce sync.Once
}

// send queues the message on this link; false when it is down, retired or
// full.
func (l *link) send(head, tail [][]byte) bool {
	return l.up.Load() && !l.retired.Load() && l.d.Send(head, tail)
}

// retireTimeout bounds how long a retired link stays open for what the
// draining proxy still delivers (replies and ACKs of what went through it).
const retireTimeout = 30 * time.Second

// links are the DEALERs of a client or server, one per proxy, followed as
// the registry changes. Sends pick an up link round-robin.
type links struct {
	opts   transport.Options // template: identity, HWM, logger, stats
	onRecv func(*link, *transport.Batch)
	// onDown: a link's connection ended (closed true), or its proxy left
	// the registry while the connection stays (closed false): resend what
	// waits on it.
	onDown func(l *link, closed bool)
	log    *slog.Logger

	quit    chan struct{} // closed by close: retired links close at once
	retired sync.WaitGroup

	mu      sync.Mutex
	byProxy map[string]*link
	all     atomic.Pointer[[]*link]
	changed chan struct{} // closed and replaced when a link goes up
	closed  bool
	rr      atomic.Uint32
}

// closeLinger is how long closing a link waits for what is queued on it
// to be written: a cast queued just before Close still leaves.
const closeLinger = time.Second

func newLinks(opts transport.Options, log *slog.Logger, onRecv func(*link, *transport.Batch), onDown func(*link, bool)) *links {
	opts.Linger = closeLinger
	ls := &links{opts: opts, onRecv: onRecv, onDown: onDown, log: log, quit: make(chan struct{}),
		byProxy: make(map[string]*link), changed: make(chan struct{})}
	ls.all.Store(&[]*link{})
	// A new client's first proxy is random, so that clients started
	// together do not all begin with one proxy.
	ls.rr.Store(rand.Uint32())
	return ls
}

// set keeps a link to endpoint for proxy; a proxy that moved is
// reconnected.
func (ls *links) set(proxy, endpoint string) {
	ls.mu.Lock()
	if ls.closed {
		ls.mu.Unlock()
		return
	}
	old := ls.byProxy[proxy]
	if old != nil && old.endpoint == endpoint {
		ls.mu.Unlock()
		return
	}
	l := &link{proxy: proxy, endpoint: endpoint, gone: make(chan struct{})}
	opts := ls.opts
	opts.OnBatch = func(b *transport.Batch) { ls.onRecv(l, b) }
	opts.OnPeer = func(_ []byte, up bool) { ls.setUp(l, up) }
	l.d = transport.NewDealer(opts)
	ls.byProxy[proxy] = l
	ls.publish()
	ls.mu.Unlock()
	if old != nil {
		ls.retire(old)
	}
	if err := l.d.Connect(endpoint); err != nil {
		ls.log.Warn("proxy address unusable", "proxy", proxy, "endpoint", endpoint, "err", err)
	}
}

// follow makes the links those to the proxies recs list: a link to
// addr(r) for every record r with an address, none to the others (a
// proxy gone, or one whose record no longer says where to connect).
func (ls *links) follow(recs map[string]registry.Record, addr func(registry.Record) string) {
	for id, r := range recs {
		if a := addr(r); a != "" {
			ls.set(id, a)
		}
	}
	for _, l := range *ls.all.Load() {
		if r, ok := recs[l.proxy]; !ok || addr(r) == "" {
			ls.remove(l.proxy)
		}
	}
}

// clientAddr is where a client connects to a proxy: a central proxy's
// frontend; nothing on a local publisher proxy.
func clientAddr(r registry.Record) string {
	if r.Kind == registry.KindLocal {
		return ""
	}
	return r.Frontend
}

// serverAddr is where a server connects to a proxy: a central proxy's
// backend, or a single-router proxy's frontend; nothing on a local
// publisher proxy.
func serverAddr(r registry.Record) string {
	if r.Kind == registry.KindLocal {
		return ""
	}
	return cmp.Or(r.Backend, r.Frontend)
}

// remove retires the link to a proxy that left the registry.
func (ls *links) remove(proxy string) {
	ls.mu.Lock()
	l := ls.byProxy[proxy]
	delete(ls.byProxy, proxy)
	ls.publish()
	ls.mu.Unlock()
	if l != nil {
		ls.retire(l)
	}
}

// retire stops sending through a link whose proxy left the registry (a
// draining proxy deregisters first), reports it down so that what waits on
// it is sent elsewhere at once, and keeps it open for what the proxy still
// delivers until the proxy closes it, retireTimeout passes, or close.
func (ls *links) retire(l *link) {
	l.retired.Store(true)
	ls.onDown(l, !l.up.Load())
	if !l.up.Load() {
		l.goneOnce.Do(func() { close(l.gone) })
	}
	ls.retired.Add(1)
	go func() {
		defer ls.retired.Done()
		t := time.NewTimer(retireTimeout)
		defer t.Stop()
		select {
		case <-l.gone:
		case <-t.C:
		case <-ls.quit:
		}
		l.up.Store(false)
		l.d.Close()
	}()
}

func (ls *links) setUp(l *link, up bool) {
	was := l.up.Swap(up)
	if up && !was {
		ls.mu.Lock()
		ls.notify()
		ls.mu.Unlock()
	}
	if !up && was {
		ls.onDown(l, true)
	}
	if !up && l.retired.Load() {
		l.goneOnce.Do(func() { close(l.gone) })
	}
}

// publish makes the current list visible to senders; under mu.
func (ls *links) publish() {
	ls.notify()
	all := make([]*link, 0, len(ls.byProxy))
	for _, l := range ls.byProxy {
		all = append(all, l)
	}
	ls.all.Store(&all)
}

// send queues the message on the next up link other than avoid (avoid is
// used only when no other link is up). It returns the link, or nil. Only
// first sends (avoid == nil) move the round-robin on, so that resends do
// not skew it.
func (ls *links) send(avoid *link, head, tail [][]byte) *link {
	all := *ls.all.Load()
	if len(all) == 0 {
		return nil
	}
	start := int(ls.rr.Load())
	if avoid == nil {
		start = int(ls.rr.Add(1))
	}
	for pass := range 2 {
		for i := range all {
			l := all[(start+i)%len(all)]
			if (pass == 0 && l == avoid) || !l.send(head, tail) {
				continue
			}
			return l
		}
	}
	return nil
}

// sendExcept queues the message on an up link for which skip is false,
// round-robin from where first sends are; nil when none takes it.
func (ls *links) sendExcept(skip func(*link) bool, head, tail [][]byte) *link {
	all := *ls.all.Load()
	start := int(ls.rr.Load())
	for i := range all {
		if l := all[(start+i)%len(all)]; !skip(l) && l.send(head, tail) {
			return l
		}
	}
	return nil
}

// count is the number of links, and of those up.
func (ls *links) count() (listed, up int) {
	all := *ls.all.Load()
	for _, l := range all {
		if l.up.Load() {
			up++
		}
	}
	return len(all), up
}

// waitUp waits until a link is up; it returns false when the registry
// has been listed and lists no proxy, or when ctx ends first.
func (ls *links) waitUp(ctx context.Context, synced <-chan struct{}) bool {
	for {
		ls.mu.Lock()
		ch := ls.changed
		ls.mu.Unlock()
		listed, up := ls.count()
		if up > 0 {
			return true
		}
		var notYet <-chan struct{}
		select {
		case <-synced:
			if listed == 0 {
				return false
			}
		default:
			notYet = synced
		}
		select {
		case <-ch:
		case <-notYet:
		case <-ctx.Done():
			return false
		}
	}
}

// notify wakes waitUp; under mu.
func (ls *links) notify() {
	close(ls.changed)
	ls.changed = make(chan struct{})
}

// close closes every link.
func (ls *links) close() {
	ls.mu.Lock()
	ls.closed = true
	all := make([]*link, 0, len(ls.byProxy))
	for _, l := range ls.byProxy {
		all = append(all, l)
	}
	ls.byProxy = map[string]*link{}
	ls.publish()
	ls.mu.Unlock()
	close(ls.quit)
	for _, l := range all {
		l.up.Store(false)
		l.d.Close()
	}
	ls.retired.Wait()
}
