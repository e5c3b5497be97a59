"""A client the proxy is expected to refuse or disconnect.

It connects a DEALER to the frontend with the security options in the
environment (zpeer.security_opts), sends one CAST, prints STEP sent and
waits for the driver, which checks the proxy's counters, to let it end.
It does not reconnect once the proxy has dropped it (RECONNECT_IVL -1),
so that the proxy's count of connected peers stays as the drop left it.
"""

import zmq

from zpeer import CAST, connect, direct, parser, run, step


def main():
    args = parser(__doc__).parse_args()
    client = connect(zmq.DEALER, args.fe, identity=b"intruder-host/0001",
                     opts={zmq.RECONNECT_IVL: -1})
    client.send_multipart(direct(CAST, b"server-host/compute/node-1/7a1b", b"intrude-1", b"must not be routed"))
    step("sent")
    return {}


if __name__ == "__main__":
    run(main)
