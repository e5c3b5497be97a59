"""A subscriber that never reads does not hold up the others.

Three SUBs subscribe to "flood". "slow" (RCVHWM 10, small RCVBUF) reads its
warm-up probe and then never reads again; two readers read everything. A
client publishes --count fanout messages of --size bytes through the proxy,
windowed on what the slower reader has received (so the readers never reach
a high-water mark). Each reader must get every message, in order.

STEP flooded: everything is published and both readers have it all, "slow"
is still connected (the driver samples RSS and the drop counter).
"""

import zmq

from zpeer import (Deadline, connect, flood, parser, run, step, subscriber,
                   warm_subs)


def main():
    p = parser(__doc__)
    p.add_argument("--count", type=int, default=10000)
    p.add_argument("--size", type=int, default=16384)
    args = p.parse_args()
    d = Deadline(args.timeout)
    client = connect(zmq.DEALER, args.fe, identity=b"client-host/fanout-flood",
                     opts={zmq.SNDTIMEO: int(args.timeout * 1000)})
    slow = subscriber(args.pub, [b"flood"], opts={zmq.RCVHWM: 10, zmq.RCVBUF: 4096})
    readers = [subscriber(args.pub, [b"flood"]) for _ in range(2)]
    warm_subs(client, [(s, b"flood.probe") for s in [slow] + readers], d)

    sent, got = flood(client, readers, args.count, args.size, d, args.timeout)
    step("flooded")
    return {"published": sent, "readers": got}


if __name__ == "__main__":
    run(main)
