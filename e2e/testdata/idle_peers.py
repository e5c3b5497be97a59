"""Peers that stay connected to a proxy while the driver stops it.

A client, a server and a SUB connect; a cast and a fanout go through (so the
proxy holds live connections on all three sockets); then STEP connected,
and the script waits for the driver, which signals the proxy meanwhile.
"""

import zmq

from zpeer import (connect, options, run, step, subscriber, warm_direct,
                   warm_subs)


def main():
    args, d = options(__doc__)
    client = connect(zmq.DEALER, args.fe, identity=b"client-host/idle")
    server = connect(zmq.DEALER, args.be or args.fe, identity=b"server-host/idle")
    sub = subscriber(args.pub, [b"idle"])
    warm_direct(client, b"server-host/idle", server, d)
    warm_subs(client, [(sub, b"idle.probe")], d)
    step("connected")
    return {"connected": 3}


if __name__ == "__main__":
    run(main)
