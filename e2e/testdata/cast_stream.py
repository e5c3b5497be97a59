"""Casts flowing steadily through a proxy until the driver says stop.

A client DEALER on the frontend sends a cast to a server DEALER on the
backend every --interval seconds, sequence-numbered, until the driver writes
"stop" on stdin; then it waits until everything sent has arrived. At most
WINDOW casts are unanswered at any time, so no high-water mark is reached
and nothing may be dropped: every cast must arrive exactly once, in order.

STEP warm: after the warm-up. Then "PROGRESS <sent> <received>" on stdout
every 50 ms until "stop". RESULT: sent, received, and max_gap_ms, the
largest time between two casts at the server while casts were being sent.
"""

import time

import zmq

from zpeer import (CAST, DEALER_ID_AT, V, Deadline, Driver, Fail, connect,
                   direct, expect, is_probe, options, poll_until, run, step,
                   warm_direct)

CLIENT_ID = b"client-host/stream"
SERVER_ID = b"server-host/stream/srv"
WINDOW = 500
PROGRESS_EVERY = 0.05


def main():
    args, d = options(__doc__, interval=0.005)
    client = connect(zmq.DEALER, args.fe, identity=CLIENT_ID)
    server = connect(zmq.DEALER, args.be or args.fe, identity=SERVER_ID)
    warm_direct(client, SERVER_ID, server, d)
    step("warm")

    poller = zmq.Poller()
    poller.register(server, zmq.POLLIN)
    driver = Driver(poller, "while casts were flowing")
    sent = received = 0
    max_gap = 0.0
    last_at = None
    stopping = False

    def take():
        nonlocal received, max_gap, last_at
        while server.poll(0):
            f = server.recv_multipart()
            if is_probe(f, DEALER_ID_AT):
                continue
            mid = b"c-%d" % received
            expect(f, [b"", V, CLIENT_ID, CAST, mid, b"body\x00" + mid],
                   "cast %d at the server (dropped, duplicated or out of order)" % received)
            received += 1
            now = time.monotonic()
            if last_at is not None and not stopping:
                max_gap = max(max_gap, now - last_at)
            last_at = now

    next_send = next_progress = time.monotonic()
    while not stopping:
        now = time.monotonic()
        if now >= next_send and sent - received < WINDOW:
            mid = b"c-%d" % sent
            client.send_multipart(direct(CAST, SERVER_ID, mid, b"body\x00" + mid))
            sent += 1
            next_send += args.interval
            if next_send < now:  # a stall (the window): do not burst to catch up
                next_send = now + args.interval
        if now >= next_progress:
            print("PROGRESS %d %d" % (sent, received), flush=True)
            next_progress = now + PROGRESS_EVERY
        ready = poll_until(poller, next_send, next_progress)
        take()
        for line in driver.lines(ready):
            if line.strip() == b"stop":
                stopping = True
            else:
                raise Fail("unknown command %r" % line)
        if d.expired():
            raise Fail("still streaming after %.0fs with no stop from the driver" % d.seconds)

    d = Deadline(args.timeout)
    while received < sent:
        if not server.poll(d.left_ms()):
            raise Fail("timed out after %.0fs: %d of %d casts received"
                       % (d.seconds, received, sent))
        take()
    return {"sent": sent, "received": received, "max_gap_ms": round(max_gap * 1000, 1)}


if __name__ == "__main__":
    run(main)
