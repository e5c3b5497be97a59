"""Call with reply through a proxy, every frame checked byte for byte.

A client DEALER on the frontend calls a server DEALER on the backend (or on
the frontend too, with --be ''), the server replies; then a server ACK and a
CAST without payload travel the same ways. With --pub, one fanout message is
also checked on a SUB (used by the single-router scenario).
"""

import zmq

from zpeer import (ACK, CALL, CAST, DEALER_ID_AT, FANOUT, REPLY, SUB_ID_AT, V,
                   Fail, connect, direct, expect, is_probe, options, recv_real,
                   run, subscriber, warm_direct, warm_subs)

CLIENT_ID = b"client-host/4f0c2a7e-9d1b-4d8e-a0a1-000000000001"
SERVER_ID = b"server-host/compute/node-1/7a1b"

# Payload frames: binary with zeros and 0xff, an empty frame, a frame longer
# than 255 bytes (a ZMTP long frame), and a last short one.
PAYLOAD = [b"\x00\x01\x00bin\xff\xfe\x00", b"", bytes(range(256)) * 300, b"end"]
REPLY_PAYLOAD = [b"\x00reply\x00", b"x" * 70000, b""]


def main():
    args, d = options(__doc__)
    server_ep = args.be or args.fe
    client = connect(zmq.DEALER, args.fe, identity=CLIENT_ID)
    server = connect(zmq.DEALER, server_ep, identity=SERVER_ID)
    probes = warm_direct(client, SERVER_ID, server, d)

    # CALL: client -> server.
    client.send_multipart(direct(CALL, SERVER_ID, b"call-1", *PAYLOAD))
    got = recv_real(server, d, "the CALL at the server")
    expect(got, [b"", V, CLIENT_ID, CALL, b"call-1"] + PAYLOAD, "CALL at the server")

    # REPLY: server -> client, addressed by the reply_id it got.
    server.send_multipart([b"", V, REPLY, got[2], b"call-1"] + REPLY_PAYLOAD)
    got = recv_real(client, d, "the REPLY at the client")
    expect(got, [b"", V, SERVER_ID, REPLY, b"call-1"] + REPLY_PAYLOAD,
           "REPLY at the client")

    # ACK from the server, no payload.
    server.send_multipart([b"", V, ACK, CLIENT_ID, b"call-1"])
    got = recv_real(client, d, "the server's ACK at the client")
    expect(got, [b"", V, SERVER_ID, ACK, b"call-1"], "server ACK at the client")

    # CAST with no payload frame at all (6 frames at the ROUTER: still valid).
    client.send_multipart(direct(CAST, SERVER_ID, b"cast-empty"))
    got = recv_real(server, d, "the payload-less CAST at the server")
    expect(got, [b"", V, CLIENT_ID, CAST, b"cast-empty"], "payload-less CAST at the server")

    result = {"probes": probes, "calls": 1}
    if args.pub:
        sub = subscriber(args.pub, [b"compute"])
        result["fanout_probes"] = warm_subs(client, [(sub, b"compute.node1")], d)
        client.send_multipart(direct(FANOUT, b"compute.node1", b"fan-1", *PAYLOAD))
        got = recv_real(sub, d, "the fanout at the SUB", id_at=SUB_ID_AT)
        expect(got, [b"compute.node1", V, FANOUT, b"fan-1"] + PAYLOAD, "fanout at the SUB")
        result["fanouts"] = 1

    # Nothing else may be waiting (a duplicate would show here).
    for name, sock in (("client", client), ("server", server)):
        while sock.poll(200):
            frames = sock.recv_multipart()
            if not is_probe(frames, DEALER_ID_AT):
                raise Fail("%s got an extra message %r" % (name, frames[:5]))
    return result


if __name__ == "__main__":
    run(main)
