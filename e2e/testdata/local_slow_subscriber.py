"""A subscriber that never reads, on one node, does not hold up the others.

On the node of --slow-node (a local publisher), "slow" (RCVHWM 10, small
RCVBUF) subscribes to "flood", reads its warm-up probe and never reads
again. A reader subscribes to "flood" on each --node (the slow node among
them, so that one reader shares its local proxy with "slow"). A client
publishes --count fanout messages of --size bytes through the central
proxy (--fe), windowed on what the slowest reader has received (so the
readers never reach a high-water mark). Every reader must get every
message, in order.

STEP flooded: everything is published and every reader has it all, "slow"
is still connected (the driver samples RSS and the drop counters).
"""

import zmq

from zpeer import (Deadline, connect, flood, parser, run, step, subscriber,
                   warm_subs)


def main():
    p = parser(__doc__)
    p.add_argument("--slow-node", required=True, help="the local publisher the slow SUB connects to")
    p.add_argument("--node", action="append", required=True, help="a local publisher with a reader")
    p.add_argument("--count", type=int, default=10000)
    p.add_argument("--size", type=int, default=16384)
    args = p.parse_args()
    d = Deadline(args.timeout)
    client = connect(zmq.DEALER, args.fe, identity=b"client-host/local-flood",
                     opts={zmq.SNDTIMEO: int(args.timeout * 1000)})
    slow = subscriber(args.slow_node, [b"flood"], opts={zmq.RCVHWM: 10, zmq.RCVBUF: 4096})
    readers = [subscriber(ep, [b"flood"]) for ep in args.node]
    warm_subs(client, [(s, b"flood.probe") for s in [slow] + readers], d)

    sent, got = flood(client, readers, args.count, args.size, d, args.timeout)
    step("flooded")
    return {"published": sent, "readers": got}


if __name__ == "__main__":
    run(main)
