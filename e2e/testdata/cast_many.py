"""Many casts from two clients to two servers, routed by key.

Each cast names its destination server in its routing key; every one must
arrive once, at that server, with the sending client's identity as reply_id
and its payload intact, in the order each client sent to that server.
Sends are windowed on what the servers have received, so no high-water mark
is ever reached and nothing may be dropped.

STEP warm: after the warm-up, before the casts.
"""

import zmq

from zpeer import (CAST, DEALER_ID_AT, V, Fail, connect, direct, expect,
                   is_probe, options, run, step, warm_direct)

CLIENTS = [b"client-a/0001", b"client-b/0002"]
SERVERS = [b"host-1/compute/s1", b"host-2/compute/s2"]
WINDOW = 200


def main():
    args, d = options(__doc__, count=1000)
    clients = [connect(zmq.DEALER, args.fe, identity=c) for c in CLIENTS]
    servers = [connect(zmq.DEALER, args.be, identity=s) for s in SERVERS]
    for c in clients:
        for sid, s in zip(SERVERS, servers):
            warm_direct(c, sid, s, d)
    step("warm")

    poller = zmq.Poller()
    for s in servers:
        poller.register(s, zmq.POLLIN)
    # last[(client index, server index)] = last sequence number received
    last = {}
    got = {sid: 0 for sid in SERVERS}
    sent = received = 0

    def receive(timeout_ms):
        nonlocal received
        ready = dict(poller.poll(timeout_ms))
        for si, s in enumerate(servers):
            while s in ready and s.poll(0):
                f = s.recv_multipart()
                if is_probe(f, DEALER_ID_AT):
                    continue
                if len(f) != 7 or f[:2] != [b"", V] or f[3] != CAST:
                    raise Fail("cast at %r: got %r, want ['', '1.0', client, '2', id, "
                               "to, body]" % (SERVERS[si], f[:6]))
                if f[2] not in CLIENTS:
                    raise Fail("cast at %r: reply_id %r is no client" % (SERVERS[si], f[2]))
                ci = CLIENTS.index(f[2])
                seq = int(f[4].split(b"-")[1])
                expect(f[4], b"c%d-%d" % (ci, seq), "message id")
                expect(f[5], b"to=" + SERVERS[si], "destination of %r" % f[4])
                expect(f[6], b"\x00body\x00" + f[4], "payload of %r" % f[4])
                prev = last.get((ci, si), -1)
                if seq <= prev:
                    raise Fail("%r at %r after %d: duplicate or out of order"
                               % (f[4], SERVERS[si], prev))
                last[(ci, si)] = seq
                got[SERVERS[si]] += 1
                received += 1

    while sent < args.count:
        if sent - received >= WINDOW:
            receive(d.left_ms())
            if d.expired():
                raise Fail("timed out: %d of %d casts received" % (received, sent))
            continue
        ci = sent % 2
        si = (sent // 2) % 2
        mid = b"c%d-%d" % (ci, sent)
        clients[ci].send_multipart(
            direct(CAST, SERVERS[si], mid, b"to=" + SERVERS[si], b"\x00body\x00" + mid))
        sent += 1
        receive(0)
    while received < sent:
        receive(d.left_ms())
        if received < sent and d.expired():
            raise Fail("timed out after %.0fs: %d of %d casts received"
                       % (d.seconds, received, sent))
    return {"sent": sent, "received": received,
            "per_server": {k.decode(): v for k, v in got.items()}}


if __name__ == "__main__":
    run(main)
