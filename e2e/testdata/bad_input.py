"""Bad input is dropped and the next good message still goes through.

A client sends, one case at a time, a bad message and then a good cast to
the server; the good cast must arrive, and nothing of the bad one. Cases:
  delimiter      frame 1 not empty                    (malformed)
  type           unknown type "9"                     (malformed)
  short          ["", "1.0", "2", server]: too few    (malformed)
  version        version "2.0"                        (unknown version)
  identity       a cast to an identity never seen     (unknown identity)
  backend-type   the server sends an unknown type     (malformed, backend)
after which a good reply from the server reaches the client.

STEP warm: after the warm-up; STEP <case>: after each case's good message
arrived (the driver checks the drop counters there).
"""

import zmq

from zpeer import (CAST, REPLY, V, connect, direct, expect, options, recv_real,
                   run, step, warm_direct)

CLIENT_ID = b"client-host/bad-1"
SERVER_ID = b"server-host/topic/bad-srv"

CASES = [
    ("delimiter", [b"x", V, CAST, SERVER_ID, b"bad-delimiter", b"p"]),
    ("type", [b"", V, b"9", SERVER_ID, b"bad-type", b"p"]),
    ("short", [b"", V, CAST, SERVER_ID]),
    ("version", [b"", b"2.0", CAST, SERVER_ID, b"bad-version", b"p"]),
    ("identity", [b"", V, CAST, b"nobody-host/never-connected", b"bad-identity", b"p"]),
]


def main():
    args, d = options(__doc__)
    client = connect(zmq.DEALER, args.fe, identity=CLIENT_ID)
    server = connect(zmq.DEALER, args.be, identity=SERVER_ID)
    warm_direct(client, SERVER_ID, server, d)
    step("warm")

    for name, bad in CASES:
        client.send_multipart(bad)
        good = b"good-after-" + name.encode()
        client.send_multipart(direct(CAST, SERVER_ID, good, b"ok"))
        f = recv_real(server, d, "the good cast after the bad %s case" % name)
        expect(f, [b"", V, CLIENT_ID, CAST, good, b"ok"],
               "first message at the server after the bad %s case" % name)
        step(name)

    # The server sends a message of unknown type on the backend, then a
    # good reply.
    server.send_multipart([b"", V, b"7", CLIENT_ID, b"bad-backend-type", b"p"])
    server.send_multipart([b"", V, REPLY, CLIENT_ID, b"good-reply", b"ok"])
    f = recv_real(client, d, "the good reply after the bad backend message")
    expect(f, [b"", V, SERVER_ID, REPLY, b"good-reply", b"ok"],
           "first message at the client after the bad backend message")
    step("backend-type")
    return {"cases": len(CASES) + 1}


if __name__ == "__main__":
    run(main)
