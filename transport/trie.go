package transport

import "bytes"

// trie is an immutable prefix tree over every subscriber's topic prefixes
// (libzmq's mtrie is the model, with edges compressed to labels). A
// publisher loads the current root without a lock and visits, along the
// topic's own bytes, exactly the nodes whose prefix matches it: publishing
// costs O(topic length + matching subscribers), whatever the subscribers
// that do not match hold.
//
// A change copies the path from the root to the node it changes and leaves
// the old tree intact (copy-on-write), so a reader never sees a tree being
// changed. Changes are serialised by the owner (Pub.mu).
type trie struct {
	label []byte  // the edge from the parent; nil at the root
	subs  []*peer // subscribers to exactly this prefix
	kids  []*trie // sorted by label[0], labels non-empty
}

// kid is the index of the child whose label starts with c, or -1.
func (n *trie) kid(c byte) int {
	lo, hi := 0, len(n.kids)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		switch k := n.kids[m].label[0]; {
		case k == c:
			return m
		case k < c:
			lo = m + 1
		default:
			hi = m
		}
	}
	return -1
}

// match calls fn for the subscribers of every prefix of topic ("" first,
// then the longer ones). A subscriber that holds several matching prefixes
// is visited once per prefix; the caller removes the repeats. It returns
// the nodes it visited: at most len(topic)+1, whatever else the tree holds.
func (n *trie) match(topic []byte, fn func(*peer)) (visited int) {
	for n != nil {
		visited++
		for _, p := range n.subs {
			fn(p)
		}
		if len(topic) == 0 {
			return visited
		}
		i := n.kid(topic[0])
		if i < 0 {
			return visited
		}
		k := n.kids[i]
		if !bytes.HasPrefix(topic, k.label) {
			return visited
		}
		topic, n = topic[len(k.label):], k
	}
	return visited
}

// with returns a tree that is n with p subscribed to key (the bytes below
// n), or, if add is false, with that subscription removed. n is not
// changed; nil is the empty tree. root says n is the root, whose label
// stays empty.
func (n *trie) with(key []byte, p *peer, add, root bool) *trie {
	var c trie
	if n != nil {
		c = *n
	}
	if len(key) == 0 {
		if add {
			c.subs = append(c.subs[:len(c.subs):len(c.subs)], p)
		} else {
			c.subs = without(c.subs, p)
		}
		return c.normal(root)
	}
	i := c.kid(key[0])
	if i < 0 {
		if !add {
			return n
		}
		leaf := &trie{label: bytes.Clone(key), subs: []*peer{p}}
		j := 0
		for j < len(c.kids) && c.kids[j].label[0] < key[0] {
			j++
		}
		kids := make([]*trie, 0, len(c.kids)+1)
		kids = append(kids, c.kids[:j]...)
		kids = append(kids, leaf)
		c.kids = append(kids, c.kids[j:]...)
		return &c
	}
	k := c.kids[i]
	common := commonPrefix(k.label, key)
	var nk *trie
	switch {
	case common == len(k.label):
		nk = k.with(key[common:], p, add, false)
	case !add:
		return n // key is not in the tree
	default:
		// Split k's edge where key leaves it.
		rest := *k
		rest.label = k.label[common:]
		mid := &trie{label: k.label[:common:common], kids: []*trie{&rest}}
		nk = mid.with(key[common:], p, true, false)
	}
	kids := make([]*trie, 0, len(c.kids))
	kids = append(kids, c.kids[:i]...)
	if nk != nil {
		kids = append(kids, nk)
	}
	c.kids = append(kids, c.kids[i+1:]...)
	return c.normal(root)
}

// normal returns c as a node, nil when it holds nothing, merged with its
// only child when it has no subscribers of its own (so the tree stays as
// small as its prefixes).
func (c *trie) normal(root bool) *trie {
	switch {
	case len(c.subs) > 0 || root && len(c.kids) > 0:
		return c
	case len(c.kids) == 0:
		return nil
	case len(c.kids) == 1 && !root:
		k := c.kids[0]
		m := *k
		m.label = append(append(make([]byte, 0, len(c.label)+len(k.label)), c.label...), k.label...)
		return &m
	}
	return c
}

func without(subs []*peer, p *peer) []*peer {
	for i, q := range subs {
		if q == p {
			out := make([]*peer, 0, len(subs)-1)
			out = append(out, subs[:i]...)
			return append(out, subs[i+1:]...)
		}
	}
	return subs
}

func commonPrefix(a, b []byte) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// walk calls fn for every (prefix, subscriber) pair in the tree, for tests
// and for the filters' view.
func (n *trie) walk(prefix []byte, fn func(prefix []byte, p *peer)) {
	if n == nil {
		return
	}
	prefix = append(prefix, n.label...)
	for _, p := range n.subs {
		fn(prefix, p)
	}
	for _, k := range n.kids {
		k.walk(prefix, fn)
	}
}
