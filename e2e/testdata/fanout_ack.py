"""ACKs for fanout messages (proxy started with -a / --ack-pub-sub).

A client sends fanout messages (CAST_FANOUT and NOTIFY) mixed with casts to a
server. For each fanout message it must get exactly one ACK, byte-exact
["", "1.0", <frontend identity>, "6", msg_id]; the frontend identity is
non-empty, the same in every ACK, and equal to --fe-id if that is given. A
cast gets no ACK from the proxy. A SUB checks the fanout messages were
published too.
"""

import zmq

from zpeer import (ACK, CAST, DEALER_ID_AT, FANOUT, NOTIFY, SUB_ID_AT, V, Fail,
                   connect, direct, expect, is_probe, options, recv_real, run,
                   subscriber, warm_direct, warm_subs)

CLIENT_ID = b"client-host/ack-1"
SERVER_ID = b"server-host/topic/ack-srv"


def main():
    args, d = options(__doc__, count=300)
    client = connect(zmq.DEALER, args.fe, identity=CLIENT_ID)
    server = connect(zmq.DEALER, args.be, identity=SERVER_ID)
    sub = subscriber(args.pub, [b"fan"])
    warm_direct(client, SERVER_ID, server, d)
    warm_subs(client, [(sub, b"fan.probe")], d)

    fanouts, casts = [], []
    for i in range(args.count):
        if i % 4 == 1:
            mid = b"cast-%d" % i
            client.send_multipart(direct(CAST, SERVER_ID, mid, b"payload"))
            casts.append(mid)
        else:
            mid = b"fan-%d" % i
            mtype = FANOUT if i % 2 == 0 else NOTIFY
            client.send_multipart(direct(mtype, b"fan.topic", mid, b"\x00payload"))
            fanouts.append(mid)
    # The last message is a fanout, so its ACK comes last.
    last = b"fan-last"
    client.send_multipart(direct(FANOUT, b"fan.topic", last, b"x"))
    fanouts.append(last)

    fe_id = args.fe_id.encode() if args.fe_id else None
    acked = []
    while len(acked) < len(fanouts):
        f = recv_real(client, d, "ACK %d of %d" % (len(acked) + 1, len(fanouts)))
        if len(f) != 5 or f[:2] != [b"", V] or f[3] != ACK:
            raise Fail("at the client: got %r, want ['', '1.0', fe_identity, '6', "
                       "msg_id]" % (f,))
        if fe_id is None:
            if not f[2]:
                raise Fail("ACK %r: empty frontend identity" % (f,))
            fe_id = f[2]
        expect(f[2], fe_id, "frontend identity in the ACK for %r" % f[4])
        acked.append(f[4])
        if f[4] == last:
            break
    if sorted(acked) != sorted(fanouts):
        dup = sorted({m for m in acked if acked.count(m) > 1})
        missing = sorted(set(fanouts) - set(acked))
        extra = sorted(set(acked) - set(fanouts))
        raise Fail("ACKs: %d for %d fanout messages; missing %r, duplicated %r, "
                   "not fanout %r" % (len(acked), len(fanouts), missing[:5], dup[:5],
                                      extra[:5]))
    # Nothing after the last ACK (no ACK for casts, no duplicates).
    while client.poll(200):
        f = client.recv_multipart()
        if not is_probe(f, DEALER_ID_AT):
            raise Fail("extra message at the client after the last ACK: %r" % (f,))

    for mid in casts:
        f = recv_real(server, d, "cast %r" % mid)
        expect(f, [b"", V, CLIENT_ID, CAST, mid, b"payload"], "cast at the server")
    published = 0
    while published < len(fanouts):
        f = recv_real(sub, d, "fanout %d of %d at the SUB" % (published + 1, len(fanouts)),
                      id_at=SUB_ID_AT)
        expect(f[3], fanouts[published], "fanout order at the SUB")
        published += 1
    return {"acks": len(acked), "casts": len(casts), "published": published,
            "fe_identity": fe_id.decode("latin-1")}


if __name__ == "__main__":
    run(main)
