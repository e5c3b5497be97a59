"""Fanout (CAST_FANOUT and NOTIFY) to SUBs with different prefix filters.

Three SUBs subscribe to "compute", "compute.node1" and "network". A client
publishes through the proxy messages on many routing keys; each SUB must get
exactly the messages whose routing key starts with its filter, byte-exact
[routing_key, "1.0", type, msg_id, payload...], in the order sent. The end
is marked by sentinel messages sent last (one PUB connection per SUB keeps
order, so when a SUB has its sentinels it has everything it will get).

STEP warm: after the warm-up, before the real messages.
"""

import zmq

from zpeer import (FANOUT, NOTIFY, SUB_ID_AT, V, Fail, connect, direct,
                   is_probe, options, run, step, subscriber, warm_subs)

FILTERS = [b"compute", b"compute.node1", b"network"]
TOPICS = [b"compute", b"compute.node1", b"compute.node1.x", b"compute.node2",
          b"computer", b"comp", b"network", b"network.a", b"other", b"net"]
# Sentinels: each SUB's filter matches at least one.
SENTINELS = [b"compute.node1.end", b"network.end"]


def main():
    args, d = options(__doc__, rounds=30)
    client = connect(zmq.DEALER, args.fe, identity=b"publisher-client/1")
    subs = [subscriber(args.pub, [f]) for f in FILTERS]
    probes = warm_subs(client, [(s, f + b".probe") for s, f in zip(subs, FILTERS)], d)
    step("warm")

    sent = []
    for r in range(args.rounds):
        for i, topic in enumerate(TOPICS):
            mtype = FANOUT if (r + i) % 2 == 0 else NOTIFY
            mid = b"m-%d-%d" % (r, i)
            payload = [b"\x00" + mid + b"\xff", b"", b"tail"]
            sent.append([topic, V, mtype, mid] + payload)
    for i, topic in enumerate(SENTINELS):
        sent.append([topic, V, FANOUT, b"end-%d" % i, b"sentinel"])
    for m in sent:
        client.send_multipart(direct(m[2], m[0], m[3], *m[4:]))

    counts = {}
    for f, sub in zip(FILTERS, subs):
        want = [m for m in sent if m[0].startswith(f)]
        ends = {m[3] for m in want if m[3].startswith(b"end-")}
        got = []
        while ends:
            frames = sub.recv_multipart() if sub.poll(d.left_ms()) else None
            if frames is None:
                raise Fail("SUB %r: timed out after %.0fs with %d of %d messages; "
                           "waiting for sentinels %r" % (f, d.seconds, len(got),
                                                         len(want), sorted(ends)))
            if is_probe(frames, SUB_ID_AT):
                continue
            got.append(frames)
            ends.discard(frames[3])
        if got != want:
            for i, (g, w) in enumerate(zip(got, want)):
                if g != w:
                    raise Fail("SUB %r: message %d: got %r, want %r" % (f, i, g, w))
            raise Fail("SUB %r: got %d messages, want %d; first extra/missing: %r"
                       % (f, len(got), len(want),
                          (got[len(want):] or want[len(got):])[:1]))
        counts[f.decode()] = len(got)
    return {"probes": probes, "published": len(sent), "per_filter": counts}


if __name__ == "__main__":
    run(main)
