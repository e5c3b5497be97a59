package transport

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"runtime"
	"slices"
	"testing"

	"github.com/go-zeromq/zmq4"

	"github.com/zmq-proxy/zmq-proxy/internal/testutil"
)

// naiveMatch is the matcher the trie replaces: a subscriber gets a topic
// if any of its prefixes is a prefix of the topic.
func naiveMatch(filters map[*peer]map[string]int, topic []byte) map[*peer]bool {
	out := map[*peer]bool{}
	for p, f := range filters {
		for prefix := range f {
			if bytes.HasPrefix(topic, []byte(prefix)) {
				out[p] = true
			}
		}
	}
	return out
}

// trieMatch is what the trie matches for topic, each subscriber once.
func trieMatch(t *trie, topic []byte) map[*peer]bool {
	out := map[*peer]bool{}
	t.match(topic, func(p *peer) { out[p] = true })
	return out
}

// subscriptions feeds ops to one filterRef per subscriber and to the
// trie, as Pub.update does: "1+ab" subscribes subscriber 1 to "ab",
// "1-ab" cancels it.
type subscriptions struct {
	peers   []*peer
	trie    *trie
	filters map[*peer]map[string]int
}

func newSubscriptions(n int) *subscriptions {
	s := &subscriptions{filters: map[*peer]map[string]int{}}
	for i := range n {
		s.peers = append(s.peers, &peer{id: []byte{byte('0' + i)}})
	}
	return s
}

func (s *subscriptions) apply(sub int, op byte, prefix string) {
	p := s.peers[sub]
	msg := append([]byte{op}, prefix...)
	if c, _ := p.filter.apply(msg); c != 0 {
		s.trie = s.trie.with([]byte(prefix), p, op == 1, true)
	}
	s.filters[p] = p.filter.counts
}

func TestTrieMatchesAsNaive(t *testing.T) {
	tests := []struct {
		name   string
		ops    []string // "<subscriber><+|-><prefix>"
		topics []string
		want   map[string]string // topic -> the subscribers that get it, in order
	}{
		{name: "nothing matches nothing", topics: []string{"", "a"}, want: map[string]string{"": "", "a": ""}},
		{name: "prefix", ops: []string{"0+ab"}, want: map[string]string{"ab": "0", "abc": "0", "a": "", "b": "", "": ""}},
		{name: "everything", ops: []string{"0+"}, want: map[string]string{"": "0", "a": "0", "\x00": "0"}},
		{name: "two prefixes", ops: []string{"0+a", "0+b"}, want: map[string]string{"a1": "0", "b1": "0", "c": ""}},
		{name: "overlapping prefixes of one subscriber count once", ops: []string{"0+a", "0+ab", "0+abc"}, want: map[string]string{"abcd": "0", "ab": "0"}},
		{name: "subscribe twice, cancel once", ops: []string{"0+a", "0+a", "0-a"}, want: map[string]string{"a": "0"}},
		{name: "subscribe twice, cancel twice", ops: []string{"0+a", "0+a", "0-a", "0-a"}, want: map[string]string{"a": ""}},
		{name: "cancel without subscribe", ops: []string{"0-a", "0+a"}, want: map[string]string{"a": "0"}},
		{name: "cancel one of two", ops: []string{"0+a", "0+b", "0-a"}, want: map[string]string{"a": "", "b": "0"}},
		{name: "cancel everything", ops: []string{"0+", "0+x", "0-"}, want: map[string]string{"a": "", "x1": "0"}},
		{name: "split edge", ops: []string{"0+abcd", "1+abxy", "2+ab"}, want: map[string]string{"abcd": "02", "abxy9": "12", "abc": "2", "a": ""}},
		{name: "merge after cancel", ops: []string{"0+abcd", "1+ab", "1-ab", "2+abce"}, want: map[string]string{"abcd": "0", "abce": "2", "ab": "", "abc": ""}},
		{name: "prefix longer than topic", ops: []string{"0+abc"}, want: map[string]string{"ab": "", "abd": ""}},
		{name: "many subscribers on one prefix", ops: []string{"0+t", "1+t", "2+t", "1-t"}, want: map[string]string{"t": "02"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSubscriptions(3)
			for _, op := range tt.ops {
				s.apply(int(op[0]-'0'), map[byte]byte{'+': 1, '-': 0}[op[1]], op[2:])
			}
			for topic, want := range tt.want {
				got := trieMatch(s.trie, []byte(topic))
				if naive := naiveMatch(s.filters, []byte(topic)); !maps.Equal(got, naive) {
					t.Errorf("topic %q: trie matched %v, the naive matcher %v", topic, names(got), names(naive))
				}
				if g := names(got); g != want {
					t.Errorf("topic %q: got subscribers %q, want %q", topic, g, want)
				}
			}
		})
	}
}

// names lists the matched subscribers' identities, sorted.
func names(m map[*peer]bool) string {
	var out []byte
	for p := range m {
		out = append(out, p.id...)
	}
	slices.Sort(out)
	return string(out)
}

// FuzzTrie: any sequence of subscribes and cancels by four subscribers
// over a small alphabet leaves a trie that matches every topic as the
// naive matcher does. Each op is three bytes: subscriber and op, prefix
// length (0-3), and the rest of the input is the prefixes' bytes.
func FuzzTrie(f *testing.F) {
	f.Add([]byte("\x01\x02ab\x03\x01a\x00\x02ab"), []byte("abc"))
	f.Add([]byte("\x01\x00\x11\x03abc\x12\x02ab\x10\x00"), []byte("ab"))
	f.Fuzz(func(t *testing.T, ops, topic []byte) {
		s := newSubscriptions(4)
		for len(ops) >= 2 {
			sub, op, n := int(ops[0]>>4)%4, ops[0]&1, min(int(ops[1])%4, len(ops)-2)
			prefix := ops[2 : 2+n]
			for i := range prefix {
				prefix[i] = 'a' + prefix[i]%3 // a tiny alphabet, so prefixes meet
			}
			s.apply(sub, op, string(prefix))
			ops = ops[2+n:]
			for _, top := range [][]byte{topic, prefix, nil} {
				if got, want := trieMatch(s.trie, top), naiveMatch(s.filters, top); !maps.Equal(got, want) {
					t.Fatalf("topic %q: trie matched %v, the naive matcher %v", top, names(got), names(want))
				}
			}
		}
		// Cancelling everything leaves the empty tree.
		for _, p := range s.peers {
			for prefix, n := range p.filter.counts {
				for range n {
					s.apply(int(p.id[0]-'0'), 0, prefix)
				}
			}
		}
		if s.trie != nil {
			t.Fatalf("after every cancel: got a tree %+v, want the empty one", s.trie)
		}
	})
}

// pubFilters is what a Pub knows of its subscribers' filters: for each,
// its sorted prefixes; the list sorted.
func pubFilters(p *Pub) []string {
	var out []string
	pre := map[*peer][]string{}
	for _, sub := range p.subs.load() {
		pre[sub] = []string{}
	}
	p.trie.Load().walk(nil, func(prefix []byte, sub *peer) {
		if pre[sub] != nil {
			pre[sub] = append(pre[sub], string(prefix))
		}
	})
	for _, l := range pre {
		slices.Sort(l)
		out = append(out, fmt.Sprintf("%q", l))
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
func waitFilters(t testing.TB, p *Pub, subs ...[]string) {
	t.Helper()
	want := wantFilters(subs...)
	testutil.CheckFor(t, wait, func() error {
		if slices.Equal(pubFilters(p), want) {
			return nil
		}
		return fmt.Errorf("the publisher's filters: want %v", want)
	})
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
		testutil.CheckFor(t, wait, func() error {
			if got[i].has(end) {
				return nil
			}
			return fmt.Errorf("%s receives the end marker", s.name)
		})
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
	testutil.CheckTrue(t, wait, "the subscriber connected", func() bool { return p.Subscribers() == 1 })

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
		testutil.CheckFor(t, wait, func() error {
			if got.has(st.sync) {
				return nil
			}
			return fmt.Errorf("%s: the sync message arrives", st.name)
		})
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
		testutil.CheckFor(t, wait, func() error {
			if healthyGot.count() == int(rounds) {
				return nil
			}
			return fmt.Errorf("the healthy subscriber gets message %d", rounds)
		})
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
// maxTopicsPerSubscriber distinct prefixes, or maxTopicBytesPerSubscriber
// bytes of them, more are refused; the ones it has keep working, and
// cancelling makes room again.
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
	if c, refused := f.apply([]byte("\x01now-fits")); refused || c != 1 {
		t.Fatalf("subscription after a cancel: got (change %d, refused %v), want (1, false)", c, refused)
	}
	if _, ok := f.counts["one-too-many"]; ok {
		t.Fatal("the refused prefix is in the filter")
	}
}

func TestFilterTopicBytesLimit(t *testing.T) {
	var f filterRef
	big := bytes.Repeat([]byte("x"), maxTopicBytesPerSubscriber/4)
	for i := range 4 {
		msg := append([]byte{1, byte('0' + i)}, big[1:]...)
		if _, refused := f.apply(msg); refused {
			t.Fatalf("subscription %d (%d bytes in all) refused, want accepted", i, f.bytes+len(msg)-1)
		}
	}
	if f.bytes != maxTopicBytesPerSubscriber {
		t.Fatalf("bytes: got %d, want %d", f.bytes, maxTopicBytesPerSubscriber)
	}
	if _, refused := f.apply([]byte("\x01y")); !refused {
		t.Fatal("one byte past the limit: got accepted, want refused")
	}
	f.apply(append([]byte{0, '0'}, big[1:]...))
	if _, refused := f.apply([]byte("\x01y")); refused {
		t.Fatal("after a cancel: got refused, want accepted")
	}
	if want := 3*len(big) + 1; f.bytes != want {
		t.Fatalf("bytes: got %d, want %d", f.bytes, want)
	}
}

// subscribeMany makes a raw SUB that subscribes to n prefixes
// "idle.00000".. that nothing published matches, and waits until the
// publisher holds them all.
func subscribeMany(t testing.TB, p *Pub, n int) {
	t.Helper()
	idle := dialRaw(t, p.Addr(), zmq4.Sub, "idle", 0)
	var buf []byte
	for i := range n {
		buf = appendMsg(buf, [][]byte{[]byte(fmt.Sprintf("\x01idle.%05d", i))}, nil)
	}
	idle.write(buf)
	testutil.CheckFor(t, wait, func() error {
		got := 0
		p.trie.Load().walk(nil, func([]byte, *peer) { got++ })
		if got < n {
			return fmt.Errorf("the publisher holds %d prefixes, want %d", got, n)
		}
		return nil
	})
}

// One subscriber's 10,000 prefixes cost another subscriber's publish
// nothing: matching visits the topic's own nodes only (one here), and
// every message reaches the subscriber that wants it and no other.
func TestPublishIgnoresOtherSubscribersPrefixes(t *testing.T) {
	p := startPub(t, Options{})
	var got collector
	startSub(t, Options{OnBatch: got.onBatch}, []string{"notify."}, p.Addr())
	waitFilters(t, p, []string{"notify."})
	topic := []byte("notify.info")
	before := p.trie.Load().match(topic, func(*peer) {})
	subscribeMany(t, p, 10000)
	after := p.trie.Load().match(topic, func(*peer) {})
	if after != before {
		t.Errorf("nodes visited to match %q: got %d beside 10,000 other prefixes, want %d as without them", topic, after, before)
	}
	const msgs = 100
	for i := range msgs {
		if n := p.Publish(fanout(string(topic), fmt.Sprint(i)), nil); n != 1 {
			t.Fatalf("Publish %d: got %d subscribers, want 1", i, n)
		}
	}
	testutil.CheckFor(t, wait, func() error {
		if n := got.count(); n != msgs {
			return fmt.Errorf("the notify. subscriber got %d messages, want %d", n, msgs)
		}
		return nil
	})
	if n := p.Publish(fanout("idle.00042", "x"), nil); n != 1 {
		t.Fatalf("Publish(idle.00042): got %d subscribers, want the idle one", n)
	}
}

// BenchmarkPublishBesideIdlePrefixes is a pair: the cost of a publish to
// one subscriber, without and with another subscriber that holds 10,000
// prefixes the topic does not match. The two should be within noise.
func BenchmarkPublishBesideIdlePrefixes(b *testing.B) {
	for _, idle := range []int{0, 10000} {
		b.Run(fmt.Sprintf("idle-prefixes=%d", idle), func(b *testing.B) {
			p := startPub(b, Options{})
			dst := dialRaw(b, p.Addr(), zmq4.Sub, "reader", 0)
			dst.send("\x01notify.")
			drained := make(chan struct{})
			go func() {
				defer close(drained)
				io.Copy(io.Discard, dst.conn)
			}()
			b.Cleanup(func() { dst.conn.Close(); <-drained })
			waitFilters(b, p, []string{"notify."})
			if idle > 0 {
				subscribeMany(b, p, idle)
			}
			msg := frames("notify.info", "1.0", "3", "8e5b0c3a-1f7d-4c8a-b2e9-0f6a3d9c0000", string(make([]byte, 200)))
			b.ReportAllocs()
			for b.Loop() {
				for p.Publish(msg, nil) == 0 {
					runtime.Gosched()
				}
			}
		})
	}
}
