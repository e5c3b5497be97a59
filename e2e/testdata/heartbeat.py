"""libzmq peers with ZMTP heartbeats stay connected through a proxy.

A client DEALER, a server DEALER and a SUB, each with ZMQ_HEARTBEAT_IVL
100 ms and ZMQ_HEARTBEAT_TIMEOUT 300 ms: libzmq sends a PING every 100 ms
and drops the connection if nothing comes back within 300 ms, so the proxy
must answer PING (with PONG). They stay connected for --hold seconds, with
no traffic but the heartbeats; then a call with reply and a fanout must go
through, and the socket monitors must show no disconnect at any time.
"""

import time

import zmq
from zmq.utils.monitor import recv_monitor_message

from zpeer import (CALL, FANOUT, REPLY, SUB_ID_AT, V, Fail, connect, direct,
                   expect, options, recv_real, run, warm_direct, warm_subs)

CLIENT_ID = b"client-host/hb"
SERVER_ID = b"server-host/topic/hb"
HB = {zmq.HEARTBEAT_IVL: 100, zmq.HEARTBEAT_TIMEOUT: 300, zmq.HEARTBEAT_TTL: 3000}
BAD = {zmq.EVENT_DISCONNECTED: "disconnected", zmq.EVENT_CLOSED: "closed",
       zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "handshake failed",
       zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "handshake failed (protocol)",
       zmq.EVENT_CONNECT_RETRIED: "connect retried"}


class Watch:
    """Reads a socket's monitor events and fails on a disconnect."""

    def __init__(self, name, mon):
        self.name, self.mon, self.connected = name, mon, 0

    def read(self, timeout_ms=0):
        while self.mon.poll(timeout_ms):
            timeout_ms = 0
            ev = recv_monitor_message(self.mon)
            if ev["event"] in BAD:
                raise Fail("%s: monitor event %s (%r) while it should stay connected"
                           % (self.name, BAD[ev["event"]], ev))
            if ev["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.connected += 1


def main():
    args, d = options(__doc__, hold=2.0)
    client, cmon = connect(zmq.DEALER, args.fe, identity=CLIENT_ID, opts=HB, monitor=True)
    server, smon = connect(zmq.DEALER, args.be, identity=SERVER_ID, opts=HB, monitor=True)
    sub, bmon = connect(zmq.SUB, args.pub, opts=HB, monitor=True)
    sub.setsockopt(zmq.SUBSCRIBE, b"hb")
    watches = [Watch("client", cmon), Watch("server", smon), Watch("sub", bmon)]
    for w in watches:
        while not w.connected:
            if d.expired():
                raise Fail("%s: no handshake in %.0fs" % (w.name, d.seconds))
            w.read(d.left_ms())
    warm_direct(client, SERVER_ID, server, d)
    warm_subs(client, [(sub, b"hb.probe")], d)

    # Hold the connections with nothing but heartbeats on them.
    end = time.monotonic() + args.hold
    while time.monotonic() < end:
        poller = zmq.Poller()
        for w in watches:
            poller.register(w.mon, zmq.POLLIN)
        poller.poll(max(1, int((end - time.monotonic()) * 1000)))
        for w in watches:
            w.read()

    client.send_multipart(direct(CALL, SERVER_ID, b"hb-call", b"ping?"))
    f = recv_real(server, d, "the CALL after the hold")
    expect(f, [b"", V, CLIENT_ID, CALL, b"hb-call", b"ping?"], "CALL at the server")
    server.send_multipart([b"", V, REPLY, CLIENT_ID, b"hb-call", b"pong!"])
    f = recv_real(client, d, "the REPLY after the hold")
    expect(f, [b"", V, SERVER_ID, REPLY, b"hb-call", b"pong!"], "REPLY at the client")
    client.send_multipart(direct(FANOUT, b"hb.topic", b"hb-fan", b"all"))
    f = recv_real(sub, d, "the fanout after the hold", id_at=SUB_ID_AT)
    expect(f, [b"hb.topic", V, FANOUT, b"hb-fan", b"all"], "fanout at the SUB")
    for w in watches:
        w.read()
        if w.connected != 1:
            raise Fail("%s: %d handshakes, want 1 (it reconnected)" % (w.name, w.connected))
    return {"hold_s": args.hold, "handshakes": {w.name: w.connected for w in watches}}


if __name__ == "__main__":
    run(main)
