"""A backend peer that never reads does not hold up a healthy one.

Server "slow" (RCVHWM 10, small RCVBUF) reads its warm-up probe and then
never reads again. A client sends --count casts of --size bytes to "slow",
and every tenth message a small cast to "fast", windowed on what "fast" has
received so that "fast" itself never reaches a high-water mark. Every cast
to "fast" must arrive, byte-exact and in order. The client's sends time out
after --timeout (a proxy that stopped reading its frontend because of "slow"
fails here).

STEP flooded: everything is sent and "fast" has it all, "slow" is still
connected with its queue full (the driver samples RSS and the drop counter).
"""

import zmq

from zpeer import (CAST, DEALER_ID_AT, V, Fail, connect, direct, expect,
                   is_probe, options, run, step, warm_direct)

CLIENT_ID = b"client-host/flood"
SLOW_ID = b"slow-host/topic/slow"
FAST_ID = b"fast-host/topic/fast"
FAST_EVERY = 10
WINDOW = 100


def main():
    args, d = options(__doc__, count=20000, size=16384)
    client = connect(zmq.DEALER, args.fe, identity=CLIENT_ID,
                     opts={zmq.SNDTIMEO: int(args.timeout * 1000)})
    slow = connect(zmq.DEALER, args.be, identity=SLOW_ID,
                   opts={zmq.RCVHWM: 10, zmq.RCVBUF: 4096})
    fast = connect(zmq.DEALER, args.be, identity=FAST_ID)
    warm_direct(client, SLOW_ID, slow, d)
    warm_direct(client, FAST_ID, fast, d)

    big = b"\x00" * args.size
    fast_sent = fast_got = 0

    def take_fast(timeout_ms):
        nonlocal fast_got
        while fast.poll(timeout_ms):
            timeout_ms = 0
            f = fast.recv_multipart()
            if is_probe(f, DEALER_ID_AT):
                continue
            want = b"fast-%d" % fast_got
            expect(f, [b"", V, CLIENT_ID, CAST, want, b"small\x00" + want],
                   "message %d at fast" % fast_got)
            fast_got += 1

    try:
        for i in range(args.count):
            client.send_multipart(direct(CAST, SLOW_ID, b"slow-%d" % i, big))
            if i % FAST_EVERY == 0:
                while fast_sent - fast_got >= WINDOW:
                    take_fast(d.left_ms())
                    if fast_sent - fast_got >= WINDOW and d.expired():
                        raise Fail("timed out after %.0fs: fast has %d of %d"
                                   % (d.seconds, fast_got, fast_sent))
                mid = b"fast-%d" % fast_sent
                client.send_multipart(direct(CAST, FAST_ID, mid, b"small\x00" + mid))
                fast_sent += 1
            take_fast(0)
    except zmq.Again:
        raise Fail("the client's send blocked for %.0fs after %d messages: the proxy "
                   "stopped reading its frontend" % (args.timeout, i)) from None
    while fast_got < fast_sent:
        take_fast(d.left_ms())
        if fast_got < fast_sent and d.expired():
            raise Fail("timed out after %.0fs: fast has %d of %d"
                       % (d.seconds, fast_got, fast_sent))
    step("flooded")
    return {"slow_sent": args.count, "fast_sent": fast_sent, "fast_received": fast_got}


if __name__ == "__main__":
    run(main)
