package transport

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/go-zeromq/zmq4"
)

func TestFilterApply(t *testing.T) {
	tests := []struct {
		name      string
		ops       []string // "+topic" subscribes, "-topic" cancels, anything else is sent as is
		wantMatch map[string]bool
	}{
		{name: "nothing matches nothing", ops: nil, wantMatch: map[string]bool{"": false, "a": false}},
		{name: "prefix", ops: []string{"+ab"}, wantMatch: map[string]bool{"ab": true, "abc": true, "a": false, "b": false, "": false}},
		{name: "everything", ops: []string{"+"}, wantMatch: map[string]bool{"": true, "a": true, "\x00": true}},
		{name: "two prefixes", ops: []string{"+a", "+b"}, wantMatch: map[string]bool{"a1": true, "b1": true, "c": false}},
		{name: "subscribe twice, cancel once", ops: []string{"+a", "+a", "-a"}, wantMatch: map[string]bool{"a": true}},
		{name: "subscribe twice, cancel twice", ops: []string{"+a", "+a", "-a", "-a"}, wantMatch: map[string]bool{"a": false}},
		{name: "cancel without subscribe", ops: []string{"-a", "+a"}, wantMatch: map[string]bool{"a": true}},
		{name: "cancel one of two", ops: []string{"+a", "+b", "-a"}, wantMatch: map[string]bool{"a": false, "b": true}},
		{name: "cancel everything", ops: []string{"+", "+x", "-"}, wantMatch: map[string]bool{"a": false, "x1": true}},
		{name: "other first bytes ignored", ops: []string{"\x02a", "", "\xffa"}, wantMatch: map[string]bool{"a": false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f filterRef
			for _, op := range tt.ops {
				switch {
				case strings.HasPrefix(op, "+"):
					f.apply(append([]byte{1}, op[1:]...))
				case strings.HasPrefix(op, "-"):
					f.apply(append([]byte{0}, op[1:]...))
				default:
					f.apply([]byte(op))
				}
			}
			f.publish()
			for topic, want := range tt.wantMatch {
				if got := f.snap.Load().match([]byte(topic)); got != want {
					t.Errorf("match(%q): got %v, want %v", topic, got, want)
				}
			}
		})
	}
}

// pubFilters is what a Pub knows of its subscribers' filters: for each,
// its sorted prefixes; the list sorted.
func pubFilters(p *Pub) []string {
	var out []string
	for _, sub := range *p.subs.Load() {
		var pre []string
		if snap := sub.filter.snap.Load(); snap != nil {
			pre = slices.Clone(snap.prefixes)
		}
		slices.Sort(pre)
		out = append(out, fmt.Sprintf("%q", pre))
	}
	slices.Sort(out)
	return out
}

func wantFilters(subs ...[]string) []string {
	var out []string
	for _, pre := range subs {
		pre = slices.Clone(pre)
		slices.Sort(pre)
		if pre == nil {
			pre = []string{}
		}
		out = append(out, fmt.Sprintf("%q", pre))
	}
	slices.Sort(out)
	return out
}

// waitFilters waits until the Pub's subscribers have exactly these
// filters: then every subscription sent before has been applied.
func waitFilters(t *testing.T, p *Pub, subs ...[]string) {
	t.Helper()
	want := wantFilters(subs...)
	eventually(t, wait, func() bool { return slices.Equal(pubFilters(p), want) },
		"the publisher's filters: want %v", want)
}

func fanout(topic, id string) [][]byte { return frames(topic, "1.0", "3", id) }

func TestPubPrefixFilters(t *testing.T) {
	const end = "~end" // every subscriber has it: it closes the test
	topics := []string{"a", "ab", "abc", "b", "ba", "c1", "x", "", "A"}
	subs := []struct {
		name       string
		prefixes   []string
		wantTopics []string
	}{
		{name: "prefix a", prefixes: []string{"a"}, wantTopics: []string{"a", "ab", "abc"}},
		{name: "prefix ab", prefixes: []string{"ab"}, wantTopics: []string{"ab", "abc"}},
		{name: "everything", prefixes: []string{""}, wantTopics: topics},
		{name: "b and c", prefixes: []string{"b", "c"}, wantTopics: []string{"b", "ba", "c1"}},
		{name: "overlapping a and ab", prefixes: []string{"a", "ab"}, wantTopics: []string{"a", "ab", "abc"}},
		{name: "nothing published", prefixes: []string{"zz"}, wantTopics: nil},
	}
	p := startPub(t, Options{})
	got := make([]*collector, len(subs))
	var filters [][]string
	for i, s := range subs {
		got[i] = new(collector)
		pre := append(slices.Clone(s.prefixes), end)
		startSub(t, Options{OnBatch: got[i].onBatch}, pre, p.Addr())
		filters = append(filters, pre)
	}
	waitFilters(t, p, filters...)

	for i, topic := range append(slices.Clone(topics), end) {
		want := 0
		for _, s := range subs {
			if topic == end || slices.Contains(s.wantTopics, topic) {
				want++
			}
		}
		if n := p.Publish(fanout(topic, fmt.Sprint(i)), nil); n != want {
			t.Errorf("Publish(%q): got %d subscribers, want %d", topic, n, want)
		}
	}
	for i, s := range subs {
		eventually(t, wait, func() bool { return got[i].has(end) }, "%s receives the end marker", s.name)
		var gotTopics []string
		for _, m := range got[i].all() {
			if m.msg[0] != end {
				gotTopics = append(gotTopics, m.msg[0])
			}
		}
		if !slices.Equal(gotTopics, s.wantTopics) {
			t.Errorf("%s: got topics %q, want %q", s.name, gotTopics, s.wantTopics)
		}
	}
	if got := p.Stats().Published.Load(); got != uint64(len(topics)+1) {
		t.Errorf("Published: got %d, want %d", got, len(topics)+1)
	}
}

// TestPubSubscriptionCounts: subscriptions count as in libzmq, through
// the wire: two SUBSCRIBEs need two CANCELs.
func TestPubSubscriptionCounts(t *testing.T) {
	p := startPub(t, Options{})
	var got collector
	sub := startSub(t, Options{OnBatch: got.onBatch}, nil, p.Addr())
	eventually(t, wait, func() bool { return p.Subscribers() == 1 }, "the subscriber connected")

	steps := []struct {
		name          string
		ops           []string // "+t" Subscribe(t), "-t" Unsubscribe(t)
		sync          string   // subscribed last: once the publisher has it, it has all ops before
		wantFilter    []string
		publish       string
		wantDelivered bool
	}{
		{name: "subscribe twice, cancel once", ops: []string{"+a", "+a", "-a"}, sync: "~1", wantFilter: []string{"a", "~1"}, publish: "a1", wantDelivered: true},
		{name: "cancel again", ops: []string{"-a"}, sync: "~2", wantFilter: []string{"~1", "~2"}, publish: "a2", wantDelivered: false},
		{name: "subscribe to everything", ops: []string{"+"}, sync: "~3", wantFilter: []string{"", "~1", "~2", "~3"}, publish: "zz", wantDelivered: true},
		{name: "cancel everything", ops: []string{"-"}, sync: "~4", wantFilter: []string{"~1", "~2", "~3", "~4"}, publish: "zz", wantDelivered: false},
	}
	for i, st := range steps {
		for _, op := range st.ops {
			if op[0] == '+' {
				sub.Subscribe([]byte(op[1:]))
			} else {
				sub.Unsubscribe([]byte(op[1:]))
			}
		}
		sub.Subscribe([]byte(st.sync))
		waitFilters(t, p, st.wantFilter)
		id := fmt.Sprint("step", i)
		n := p.Publish(fanout(st.publish, id), nil)
		if want := map[bool]int{true: 1, false: 0}[st.wantDelivered]; n != want {
			t.Errorf("%s: Publish(%q) got %d subscribers, want %d", st.name, st.publish, n, want)
		}
		p.Publish(fanout(st.sync, id), nil)
		eventually(t, wait, func() bool { return got.has(st.sync) }, "%s: the sync message arrives", st.name)
		if delivered := got.has(st.publish, "1.0", "3", id); delivered != st.wantDelivered {
			t.Errorf("%s: %q delivered: got %v, want %v", st.name, st.publish, delivered, st.wantDelivered)
		}
	}
}

// TestPubSubscribeCommands: a ZMTP 3.1 peer subscribes with SUBSCRIBE
// and CANCEL commands instead of messages.
func TestPubSubscribeCommands(t *testing.T) {
	p := startPub(t, Options{})
	raw := dialRaw(t, p.Addr(), zmq4.Sub, "", 0)
	raw.write(appendCommand(nil, "SUBSCRIBE", []byte("t")))
	waitFilters(t, p, []string{"t"})
	if n := p.Publish(fanout("t1", "m1"), nil); n != 1 {
		t.Fatalf("Publish(t1): got %d subscribers, want 1", n)
	}
	res, fr, err := raw.read()
	if err != nil || res != parseMessage || !slices.Equal(fr, []string{"t1", "1.0", "3", "m1"}) {
		t.Fatalf("got (%v, %q, %v), want the message", res, fr, err)
	}
	raw.write(appendCommand(nil, "CANCEL", []byte("t")))
	waitFilters(t, p, []string{})
	if n := p.Publish(fanout("t2", "m2"), nil); n != 0 {
		t.Fatalf("Publish(t2) after CANCEL: got %d subscribers, want 0", n)
	}
}

// TestPubSlowSubscriber: a subscriber that never reads loses messages
// once its queue is full, counted; the others get every one, and Publish
// never blocks.
func TestPubSlowSubscriber(t *testing.T) {
	p := startPub(t, Options{HWM: 10})
	var healthyGot collector
	startSub(t, Options{OnBatch: healthyGot.onBatch}, []string{""}, p.Addr())
	slow := dialRaw(t, p.Addr(), zmq4.Sub, "slow", 4096)
	slow.send("\x01") // subscribe to everything, then never read
	waitFilters(t, p, []string{""}, []string{""})

	big := string(bytes.Repeat([]byte("x"), 64<<10))
	var rounds, sent, dropped uint64
	for p.Stats().DroppedHWM.Load() < 5 {
		n := p.Publish(frames("topic", big), nil)
		if n < 1 {
			t.Fatalf("round %d: Publish reached %d subscribers, want at least the healthy one", rounds, n)
		}
		rounds++
		sent += uint64(n)
		dropped += uint64(2 - n)
		eventually(t, wait, func() bool { return healthyGot.count() == int(rounds) }, "the healthy subscriber gets message %d", rounds)
		if rounds*uint64(len(big)) > 512<<20 {
			t.Fatalf("the slow subscriber took %d MiB without reaching its high-water mark", rounds*uint64(len(big))>>20)
		}
	}
	st := p.Stats()
	if got := st.DroppedHWM.Load(); got != dropped {
		t.Errorf("DroppedHWM: got %d, want %d", got, dropped)
	}
	if got := st.Sent.Load(); got != sent {
		t.Errorf("Sent: got %d, want %d", got, sent)
	}
	if got := st.Published.Load(); got != rounds {
		t.Errorf("Published: got %d, want %d", got, rounds)
	}
	if got := healthyGot.count(); got != int(rounds) {
		t.Errorf("healthy subscriber: got %d messages, want %d", got, rounds)
	}
	t.Logf("%d rounds, %d dropped for the slow subscriber", rounds, dropped)
}

// A subscriber cannot grow the proxy without bound by subscribing: past
// maxTopicsPerSubscriber distinct prefixes, more are refused; the ones it
// has keep working, and cancelling makes room again.
func TestFilterTopicLimit(t *testing.T) {
	var f filterRef
	for i := range maxTopicsPerSubscriber {
		if _, refused := f.apply([]byte(fmt.Sprintf("\x01t%d", i))); refused {
			t.Fatalf("subscription %d refused, want the first %d accepted", i, maxTopicsPerSubscriber)
		}
	}
	if _, refused := f.apply([]byte("\x01one-too-many")); !refused {
		t.Fatal("subscription past the limit: got accepted, want refused")
	}
	if _, refused := f.apply([]byte("\x01t5")); refused {
		t.Fatal("repeated subscription to a held prefix refused")
	}
	f.apply([]byte("\x00t0"))
	if _, refused := f.apply([]byte("\x01now-fits")); refused {
		t.Fatal("subscription after a cancel refused")
	}
	f.publish()
	if !f.snap.Load().match([]byte("now-fits")) || f.snap.Load().match([]byte("one-too-many")) {
		t.Fatal("filter does not reflect the limit")
	}
}
