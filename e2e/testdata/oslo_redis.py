"""oslo.messaging's services, as its ZeroMQ driver behaves, finding the
proxies in Redis (docs/protocol.md, "The Redis matchmaker").

The proxies come from the matchmaker as the driver reads it: the live
members of PUBLISHERS ("<publisher>,<frontend>", a member being live while
its own liveness key exists: TTL >= -1) and of ROUTERS. The client's DEALER
connects to every frontend, each server's DEALER to every ROUTERS member,
and in pub/sub mode each server's SUB to every publisher.

Servers register their identities as the driver does, with liveness keys:
DEALER/<topic> and DEALER/<topic>/<server>. The client picks a CALL's or a
CAST's destination among the live members of those keys; in router-only
mode it sends a fanout or a notification once per live member of
DEALER/<topic>.

Scenarios (--mode):
  pubsub   servers on topic "compute" subscribe on the publishers; fanout
           and notify are sent once and published.
  router   servers on "compute" and a notification listener on
           "notifications.info" are DEALERs only; fanout and notify are
           sent once per identity and must reach each exactly once.
  mixed    both at once through the same proxies: router-only servers on
           "compute" and pub/sub servers on "network".

Every message is checked byte for byte: CALL, its ACK and REPLY, CAST,
CAST_FANOUT and NOTIFY, with oslo's JSON payloads. Nothing else may arrive.
"""

import json
import uuid

import redis
import zmq

from zpeer import (ACK, CALL, CAST, FANOUT, NOTIFY, REPLY, SUB_ID_AT, V,
                   Deadline, Fail, connect, direct, expect, is_probe, parser,
                   recv_real, run, subscriber, warm_direct, warm_subs)

HOST = "node-1"
TTL = 60


class Matchmaker:
    """oslo.messaging's matchmaker_redis, the calls the driver makes."""

    def __init__(self, addr, password):
        host, port = addr.rsplit(":", 1)
        self.r = redis.StrictRedis(host=host, port=int(port), password=password or None)

    def live(self, key):
        return sorted(m.decode() for m in self.r.smembers(key) if self.r.ttl(m) >= -1)

    def register(self, key, member):
        pipe = self.r.pipeline()
        pipe.sadd(key, member)
        pipe.expire(key, TTL)
        pipe.sadd(member, " ")
        pipe.expire(member, TTL)
        pipe.execute()

    def unregister(self, key, member):
        self.r.srem(key, member)
        self.r.srem(member, " ")


def context(**kw):
    return dict({"user": "demo", "request_id": "req-" + str(uuid.uuid4())}, **kw)


def rpc_payload(method, **args):
    return json.dumps([context(), {"method": method, "args": args}]).encode()


def notify_payload(event):
    return json.dumps([context(), {
        "message_id": str(uuid.uuid4()), "publisher_id": "compute.node-1",
        "event_type": event, "priority": "INFO", "payload": {"state": "active"},
        "timestamp": "2026-11-30 09:26:03.767929"}]).encode()


class Server:
    """An RPC server (or a notification listener): a DEALER on every
    router, registered in the matchmaker; with pubsub, a SUB too."""

    def __init__(self, mm, routers, pubs, topic, server, pubsub):
        tail = "%s/%s/%s" % (topic, server, uuid.uuid4()) if server else "%s/%s" % (topic, uuid.uuid4())
        self.id = ("%s/%s" % (HOST, tail)).encode()
        self.topic = topic
        self.name = server or topic
        self.dealers = [connect(zmq.DEALER, "tcp://" + r, identity=self.id) for r in routers]
        self.sub = subscriber("tcp://" + pubs[0], [topic.encode()]) if pubsub else None
        for p in pubs[1:] if pubsub else []:
            self.sub.connect("tcp://" + p)
        self.keys = ["DEALER/" + topic] + (["DEALER/%s/%s" % (topic, server.split("@")[0])] if server else [])
        for k in self.keys:
            mm.register(k, self.id)

    def recv(self, d, what):
        poller = zmq.Poller()
        for s in self.dealers:
            poller.register(s, zmq.POLLIN)
        while True:
            ready = dict(poller.poll(d.left_ms()))
            if not ready:
                raise Fail("%s: timed out waiting for %s" % (self.name, what))
            for s in self.dealers:
                if s in ready:
                    f = s.recv_multipart()
                    if not is_probe(f, 4):
                        return s, f

    def quiet(self, what):
        """Fails if anything but a probe is waiting."""
        socks = self.dealers + ([self.sub] if self.sub else [])
        for s in socks:
            while s.poll(300):
                f = s.recv_multipart()
                if not (is_probe(f, 4) or is_probe(f, SUB_ID_AT)):
                    raise Fail("%s got an extra message after %s: %r" % (self.name, what, f[:5]))


def pick(mm, key, rr):
    live = mm.live(key)
    if not live:
        raise Fail("no live member of %s in the matchmaker" % key)
    rr[key] = rr.get(key, -1) + 1
    return live[rr[key] % len(live)].encode()


def main():
    p = parser(__doc__)
    p.add_argument("--redis", required=True, help="host:port of the matchmaker")
    p.add_argument("--password", default="")
    p.add_argument("--mode", choices=["pubsub", "router", "mixed"], required=True)
    args = p.parse_args()
    d = Deadline(args.timeout)
    mm = Matchmaker(args.redis, args.password)

    publishers = [m.split(",") for m in mm.live("PUBLISHERS")]
    routers = mm.live("ROUTERS")
    if not publishers or not routers:
        raise Fail("matchmaker: PUBLISHERS %r, ROUTERS %r: want a proxy in each" % (publishers, routers))
    frontends = [fe for _, fe in publishers]
    pubs = [pub for pub, _ in publishers if pub]
    if args.mode == "router" and pubs:
        raise Fail("router-only proxies registered publishers %r, want none" % pubs)
    if args.mode != "router" and not pubs:
        raise Fail("no publisher in PUBLISHERS %r" % publishers)

    client_id = ("%s/%s" % (HOST, uuid.uuid4())).encode()
    client = [connect(zmq.DEALER, "tcp://" + fe, identity=client_id) for fe in frontends][0]
    if len(frontends) > 1:
        raise Fail("want one proxy in this scenario, got frontends %r" % frontends)

    routed = args.mode in ("router", "mixed")
    rpc_topic = "compute"
    servers = [Server(mm, routers, pubs, rpc_topic, "server-%d@host" % i, not routed) for i in (1, 2)]
    listener = Server(mm, routers, pubs, "notifications.info", None, not routed)
    extra = []
    if args.mode == "mixed":
        extra = [Server(mm, routers, pubs, "network", "net-%d" % i, True) for i in (1, 2)]

    probes = 0
    for s in servers + [listener] + extra:
        probes += warm_direct(client, s.id, s.dealers[0], d)
    subs = [(s.sub, s.topic.encode()) for s in servers + [listener] + extra if s.sub]
    if subs:
        probes += warm_subs(client, subs, d)

    rr = {}
    result = {"probes": probes}

    # CALL to compute/server-1: ACK, then REPLY, each byte for byte.
    dest = pick(mm, "DEALER/compute/server-1", rr)
    target = next(s for s in servers if s.id == dest)
    body = rpc_payload("echo", value="hello")
    client.send_multipart(direct(CALL, dest, b"call-1", body))
    sock, got = target.recv(d, "the CALL")
    expect(got, [b"", V, client_id, CALL, b"call-1", body], "CALL at the server")
    sock.send_multipart([b"", V, ACK, got[2], b"call-1"])
    reply = json.dumps(["hello", None]).encode()
    sock.send_multipart([b"", V, REPLY, got[2], b"call-1", reply])
    expect(recv_real(client, d, "the ACK"), [b"", V, dest, ACK, b"call-1"], "ACK at the client")
    expect(recv_real(client, d, "the REPLY"), [b"", V, dest, REPLY, b"call-1", reply], "REPLY at the client")
    result["calls"] = 1

    # CAST to the topic: one live server, round-robin.
    dest = pick(mm, "DEALER/compute", rr)
    target = next(s for s in servers if s.id == dest)
    body = rpc_payload("cast_me", n=1)
    client.send_multipart(direct(CAST, dest, b"cast-1", body))
    _, got = target.recv(d, "the CAST")
    expect(got, [b"", V, client_id, CAST, b"cast-1", body], "CAST at the server")
    result["casts"] = 1

    # CAST_FANOUT and NOTIFY.
    fan = rpc_payload("fanout_me", n=2)
    note = notify_payload("compute.instance.create.end")
    if routed:
        ids = [m.encode() for m in mm.live("DEALER/compute")]
        expect(sorted(ids), sorted(s.id for s in servers), "DEALER/compute members")
        for i in ids:
            client.send_multipart(direct(FANOUT, i, b"fan-1", fan))
        for s in servers:
            _, got = s.recv(d, "the fanout")
            expect(got, [b"", V, client_id, FANOUT, b"fan-1", fan], "routed fanout at " + s.name)
        for i in mm.live("DEALER/notifications.info"):
            client.send_multipart(direct(NOTIFY, i.encode(), b"note-1", note))
        _, got = listener.recv(d, "the notification")
        expect(got, [b"", V, client_id, NOTIFY, b"note-1", note], "routed notification")
        result["routed_fanouts"] = len(ids)
    else:
        client.send_multipart(direct(FANOUT, b"compute", b"fan-1", fan))
        for s in servers:
            got = recv_real(s.sub, d, "the published fanout", id_at=SUB_ID_AT)
            expect(got, [b"compute", V, FANOUT, b"fan-1", fan], "published fanout at " + s.name)
        client.send_multipart(direct(NOTIFY, b"notifications.info", b"note-1", note))
        got = recv_real(listener.sub, d, "the published notification", id_at=SUB_ID_AT)
        expect(got, [b"notifications.info", V, NOTIFY, b"note-1", note], "published notification")
        result["published_fanouts"] = 1
    if extra:
        # The pub/sub services beside the router-only ones.
        client.send_multipart(direct(FANOUT, b"network", b"fan-net", fan))
        for s in extra:
            got = recv_real(s.sub, d, "the published fanout", id_at=SUB_ID_AT)
            expect(got, [b"network", V, FANOUT, b"fan-net", fan], "published fanout at " + s.name)
        result["published_fanouts"] = 1

    for s in servers + [listener] + extra:
        s.quiet("the scenario")
    while client.poll(300):
        f = client.recv_multipart()
        if not is_probe(f, 4):
            raise Fail("client got an extra message %r" % f[:5])
    for s in servers + [listener] + extra:
        for k in s.keys:
            mm.unregister(k, s.id)
    return result


if __name__ == "__main__":
    run(main)
