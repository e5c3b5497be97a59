"""Fanout through central proxies and a local publisher proxy per node.

Each --node is one node's local publisher; SUBs connect to it with the
filters of FILTERS for that node (node 1 is the first --node). A client
DEALER per --central frontend publishes CAST_FANOUT and NOTIFY messages on
the routing keys of TOPICS, alternating between the central proxies. Every
SUB must get, byte-exact [routing_key, "1.0", type, msg_id, payload...],
exactly once, every message whose routing key starts with its filter, and
no other; and from each central proxy in the order sent (one path each).

Sends are windowed: at most WINDOW messages are sent past the oldest one a
SUB still waits for, so no queue anywhere holds more than WINDOW and no
high-water mark is reached.

Warm-up: probes through each central proxy until every SUB has one that
came through it (a subscription travels two hops: SUB -> local PUB, and the
local proxy's SUB -> every central PUB).

STEP warm: after the warm-up, before the real messages.
STEP done: every SUB has everything, and all are still connected.
"""

import zmq

from zpeer import (FANOUT, NOTIFY, SUB_ID_AT, V, Deadline, Fail, connect,
                   direct, is_probe, parser, run, step, subscriber)

# Filters of the SUBs on node i (1-based), "" (everything) on the third.
FILTERS = {
    1: [b"compute", b"compute.node-1", b"network"],
    2: [b"compute", b"compute.node-2"],
    3: [b"", b"compute.node-3", b"network"],
}
TOPICS = [b"compute", b"compute.node-1", b"compute.node-1.x", b"compute.node-2",
          b"compute.node-3", b"computer", b"comp", b"network", b"network.a",
          b"other", b"net"]
WINDOW = 200
PROBE_MS = 50


class Sub:
    def __init__(self, node, endpoint, filt):
        self.name = "node-%d %s" % (node, filt.decode() or '""')
        self.filt = filt
        self.sock = subscriber(endpoint, [filt])
        self.expected = []  # indexes of the messages it must get, in send order
        self.next = 0       # expected[:next] have all arrived
        self.got = set()    # indexes that arrived
        self.last = {}      # central -> index of the last message from it

    def done_through(self, sent):
        """All messages with an index below this have arrived (or are not
        for this SUB)."""
        while self.next < len(self.expected) and self.expected[self.next] in self.got:
            self.next += 1
        return self.expected[self.next] if self.next < len(self.expected) else sent


def main():
    p = parser(__doc__)
    p.add_argument("--central", action="append", required=True, help="a central proxy's frontend")
    p.add_argument("--node", action="append", required=True, help="a node's local publisher")
    p.add_argument("--rounds", type=int, default=100)
    args = p.parse_args()
    d = Deadline(args.timeout)
    if len(args.node) > len(FILTERS):
        raise Fail("at most %d nodes" % len(FILTERS))
    clients = [connect(zmq.DEALER, fe, identity=b"fanout-client/%d" % i)
               for i, fe in enumerate(args.central)]
    subs = [Sub(n, ep, f) for n, ep in enumerate(args.node, 1) for f in FILTERS[n]]
    poller = zmq.Poller()
    for s in subs:
        poller.register(s.sock, zmq.POLLIN)
    by_sock = {s.sock: s for s in subs}

    # Warm-up, one central proxy at a time: probe ids say which one.
    probes = 0
    for c, client in enumerate(args.central):
        tag = b"probe-c%d-" % c
        pending = set(subs)
        while pending:
            for s in pending:
                clients[c].send_multipart(direct(FANOUT, s.filt + b".probe", tag + b"%d" % probes, b"p"))
                probes += 1
            for sock, _ in poller.poll(PROBE_MS):
                s = by_sock[sock]
                while sock.poll(0):
                    f = sock.recv_multipart()
                    if f[SUB_ID_AT].startswith(tag):
                        pending.discard(s)
            if pending and d.expired():
                raise Fail("warm-up through central %d: %s got no probe in %.0fs"
                           % (c, sorted(s.name for s in pending), d.seconds))
    step("warm")

    msgs = []  # index -> the frames a SUB gets
    for r in range(args.rounds):
        for i, topic in enumerate(TOPICS):
            n = len(msgs)
            c = n % len(clients)
            mtype = FANOUT if (r + i) % 2 == 0 else NOTIFY
            mid = b"m-c%d-%d" % (c, n)
            msgs.append([topic, V, mtype, mid, b"\x00" + mid + b"\xff", b"", b"tail"])
    central_of = [n % len(clients) for n in range(len(msgs))]

    def take(timeout_ms):
        for sock, _ in poller.poll(timeout_ms):
            s = by_sock[sock]
            while sock.poll(0):
                f = sock.recv_multipart()
                if is_probe(f, SUB_ID_AT):
                    continue
                try:
                    n = int(f[SUB_ID_AT].rsplit(b"-", 1)[1])
                    want = msgs[n]
                except (IndexError, ValueError):
                    raise Fail("%s: unknown message %r" % (s.name, f)) from None
                if f != want:
                    raise Fail("%s: message %d: got %r, want %r" % (s.name, n, f, want))
                if not want[0].startswith(s.filt):
                    raise Fail("%s: got %r, whose routing key does not match" % (s.name, f[:4]))
                if n in s.got:
                    raise Fail("%s: message %r twice" % (s.name, f[:4]))
                c = central_of[n]
                if s.last.get(c, -1) > n:
                    raise Fail("%s: message %d from central %d after %d" % (s.name, n, c, s.last[c]))
                s.last[c] = n
                s.got.add(n)

    sent = 0
    while sent < len(msgs):
        if sent - min(s.done_through(sent) for s in subs) >= WINDOW:
            take(d.left_ms())
            if d.expired():
                raise Fail("timed out after %.0fs with %d sent" % (d.seconds, sent))
            continue
        m = msgs[sent]
        for s in subs:
            if m[0].startswith(s.filt):
                s.expected.append(sent)
        clients[central_of[sent]].send_multipart(direct(m[2], m[0], m[3], *m[4:]))
        sent += 1
        take(0)
    while any(s.done_through(sent) < sent for s in subs):
        take(d.left_ms())
        if d.expired():
            missing = {s.name: len(s.expected) - len(s.got) for s in subs if len(s.got) < len(s.expected)}
            raise Fail("timed out after %.0fs; messages missing: %r" % (d.seconds, missing))
    take(0)  # anything extra that is already there
    step("done")
    return {"probes": probes, "published": sent,
            "per_sub": {s.name: len(s.got) for s in subs}}


if __name__ == "__main__":
    run(main)
