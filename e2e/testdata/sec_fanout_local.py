"""Fanout from a client on a central proxy to a SUB on a local publisher.

The client DEALER (security options from the environment, zpeer's
security_opts) sends a fanout on --fe; the SUB reads --pub, the local
publisher proxy's PUB: with --sub-server-key as a CURVE client of that key
(with the same client keys), else with the same options as the client.
"""

import os

import zmq

from zpeer import (FANOUT, SUB_ID_AT, V, Deadline, connect, direct, expect,
                   parser, recv_real, run, warm_subs)

PAYLOAD = [b"\x00fan\xff", b"", bytes(range(256)) * 10]


def main():
    p = parser(__doc__)
    p.add_argument("--sub-server-key", default="", help="the local proxy's CURVE public key")
    args = p.parse_args()
    d = Deadline(args.timeout)
    client = connect(zmq.DEALER, args.fe, identity=b"client-host/0001")
    if args.sub_server_key:
        # The SUB talks to the local proxy, which has its own server key.
        central_key = os.environ["ZP_CURVE_SERVER_KEY"]
        os.environ["ZP_CURVE_SERVER_KEY"] = args.sub_server_key
        sub = connect(zmq.SUB, args.pub)
        os.environ["ZP_CURVE_SERVER_KEY"] = central_key
    else:
        sub = connect(zmq.SUB, args.pub)
    sub.setsockopt(zmq.SUBSCRIBE, b"compute")
    probes = warm_subs(client, [(sub, b"compute.node1")], d)
    client.send_multipart(direct(FANOUT, b"compute.node1", b"fan-1", *PAYLOAD))
    got = recv_real(sub, d, "the fanout at the SUB", id_at=SUB_ID_AT)
    expect(got, [b"compute.node1", V, FANOUT, b"fan-1"] + PAYLOAD, "fanout at the SUB")
    return {"probes": probes, "fanouts": 1}


if __name__ == "__main__":
    run(main)
