"""A subscriber that never reads does not hold up the others.

Three SUBs subscribe to "flood". "slow" (RCVHWM 10, small RCVBUF) reads its
warm-up probe and then never reads again; two readers read everything. A
client publishes --count fanout messages of --size bytes through the proxy,
windowed on what the slower reader has received (so the readers never reach
a high-water mark). Each reader must get every message, in order.

STEP flooded: everything is published and both readers have it all, "slow"
is still connected (the driver samples RSS and the drop counter).
"""

from zpeer import options, run, slow_subscriber_flood


def main():
    args, d = options(__doc__, count=10000, size=16384)
    return slow_subscriber_flood(args, d, b"client-host/fanout-flood", args.pub, [args.pub] * 2)


if __name__ == "__main__":
    run(main)
