"""Fanout from a client on a central proxy to a SUB on a local publisher.

The client DEALER (security options from the environment, zpeer's
security_opts) sends a fanout on --fe; the SUB reads --pub, the local
publisher proxy's PUB, without security options of its own: the local
proxy has none on its PUB in this scenario.
"""

import os

import zmq

from zpeer import (FANOUT, SUB_ID_AT, V, Deadline, connect, direct, expect,
                   parser, recv_real, run, warm_subs)

PAYLOAD = [b"\x00fan\xff", b"", bytes(range(256)) * 10]


def main():
    args = parser(__doc__).parse_args()
    d = Deadline(args.timeout)
    client = connect(zmq.DEALER, args.fe, identity=b"client-host/0001")
    # The SUB talks to the local proxy, which has no security: no options.
    saved = {k: os.environ.pop(k) for k in list(os.environ) if k.startswith("ZP_CURVE_")}
    sub = connect(zmq.SUB, args.pub)
    os.environ.update(saved)
    sub.setsockopt(zmq.SUBSCRIBE, b"compute")
    probes = warm_subs(client, [(sub, b"compute.node1")], d)
    client.send_multipart(direct(FANOUT, b"compute.node1", b"fan-1", *PAYLOAD))
    got = recv_real(sub, d, "the fanout at the SUB", id_at=SUB_ID_AT)
    expect(got, [b"compute.node1", V, FANOUT, b"fan-1"] + PAYLOAD, "fanout at the SUB")
    return {"probes": probes, "fanouts": 1}


if __name__ == "__main__":
    run(main)
