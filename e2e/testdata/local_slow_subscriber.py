"""A subscriber that never reads, on one node, does not hold up the others.

On the node of --slow-node (a local publisher), "slow" (RCVHWM 10, small
RCVBUF) subscribes to "flood", reads its warm-up probe and never reads
again. A reader subscribes to "flood" on each --node (the slow node among
them, so that one reader shares its local proxy with "slow"). A client
publishes --count fanout messages of --size bytes through the central
proxy (--fe), windowed on what the slowest reader has received (so the
readers never reach a high-water mark). Every reader must get every
message, in order.

STEP flooded: everything is published and every reader has it all, "slow"
is still connected (the driver samples RSS and the drop counters).
"""

import zmq

from zpeer import (FANOUT, SUB_ID_AT, V, Deadline, Fail, connect, direct,
                   expect, is_probe, parser, run, step, subscriber, warm_subs)

WINDOW = 100


def main():
    p = parser(__doc__)
    p.add_argument("--slow-node", required=True, help="the local publisher the slow SUB connects to")
    p.add_argument("--node", action="append", required=True, help="a local publisher with a reader")
    p.add_argument("--count", type=int, default=10000)
    p.add_argument("--size", type=int, default=16384)
    args = p.parse_args()
    d = Deadline(args.timeout)
    client = connect(zmq.DEALER, args.fe, identity=b"client-host/local-flood",
                     opts={zmq.SNDTIMEO: int(args.timeout * 1000)})
    slow = subscriber(args.slow_node, [b"flood"], opts={zmq.RCVHWM: 10, zmq.RCVBUF: 4096})
    readers = [subscriber(ep, [b"flood"]) for ep in args.node]
    warm_subs(client, [(s, b"flood.probe") for s in [slow] + readers], d)

    body = b"\x01" * args.size
    got = [0] * len(readers)
    poller = zmq.Poller()
    for r in readers:
        poller.register(r, zmq.POLLIN)

    def take(timeout_ms):
        ready = dict(poller.poll(timeout_ms))
        for n, r in enumerate(readers):
            if r not in ready:
                continue
            while r.poll(0):
                f = r.recv_multipart()
                if is_probe(f, SUB_ID_AT):
                    continue
                mid = b"m-%d" % got[n]
                if f[:4] != [b"flood", V, FANOUT, mid]:
                    raise Fail("reader %d: message %d: got %r, want %r"
                               % (n, got[n], f[:4], [b"flood", V, FANOUT, mid]))
                expect(f[4:], [body], "reader %d: payload of %r" % (n, mid))
                got[n] += 1

    sent = 0
    try:
        while sent < args.count:
            if sent - min(got) >= WINDOW:
                take(d.left_ms())
                if sent - min(got) >= WINDOW and d.expired():
                    raise Fail("timed out after %.0fs: readers have %r of %d"
                               % (d.seconds, got, sent))
                continue
            client.send_multipart(direct(FANOUT, b"flood", b"m-%d" % sent, body))
            sent += 1
            take(0)
    except zmq.Again:
        raise Fail("the client's send blocked for %.0fs after %d messages: the central "
                   "proxy stopped reading its frontend" % (args.timeout, sent)) from None
    while min(got) < sent:
        take(d.left_ms())
        if min(got) < sent and d.expired():
            raise Fail("timed out after %.0fs: readers have %r of %d"
                       % (d.seconds, got, sent))
    step("flooded")
    return {"published": sent, "readers": got}


if __name__ == "__main__":
    run(main)
