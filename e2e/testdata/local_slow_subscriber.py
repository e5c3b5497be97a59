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

from zpeer import Deadline, parser, run, slow_subscriber_flood


def main():
    p = parser(__doc__)
    p.add_argument("--slow-node", required=True, help="the local publisher the slow SUB connects to")
    p.add_argument("--node", action="append", required=True, help="a local publisher with a reader")
    p.add_argument("--count", type=int, default=10000)
    p.add_argument("--size", type=int, default=16384)
    args = p.parse_args()
    return slow_subscriber_flood(args, Deadline(args.timeout), b"client-host/local-flood",
                                 args.slow_node, args.node)


if __name__ == "__main__":
    run(main)
