"""Casts sent while the proxy is paused: held back, then all delivered.

A client DEALER on the frontend and a server DEALER on the backend warm up
(STEP warm); the driver pauses the proxy. The client then sends casts of
--size bytes without blocking until its queue is full (its high-water mark,
once the TCP buffers between it and the paused proxy are full) or --count
are sent, prints "SENT <n>" and STEP sent; the driver checks the proxy
and resumes it. The server must then receive all n casts, in order, once
each.

RESULT: sent, received, and received_while_paused (what the server had
before STEP sent was answered: it must be 0).
"""

import zmq

from zpeer import (CAST, DEALER_ID_AT, V, Fail, connect, direct, expect,
                   is_probe, options, run, step, warm_direct)

CLIENT_ID = b"client-host/paused"
SERVER_ID = b"server-host/paused/srv"


def main():
    args, d = options(__doc__, count=100000, size=1024)
    client = connect(zmq.DEALER, args.fe, identity=CLIENT_ID)
    server = connect(zmq.DEALER, args.be or args.fe, identity=SERVER_ID)
    warm_direct(client, SERVER_ID, server, d)
    # Probes still in flight arrive now, before the pause.
    while server.poll(200):
        f = server.recv_multipart()
        if not is_probe(f, DEALER_ID_AT):
            raise Fail("before the pause: got %r, want only probes" % f)
    step("warm")

    body = b"x" * args.size
    sent = 0
    while sent < args.count:
        try:
            client.send_multipart(direct(CAST, SERVER_ID, b"p-%d" % sent, body), zmq.NOBLOCK)
        except zmq.Again:
            break
        sent += 1
    print("SENT %d" % sent, flush=True)
    early = 0
    while server.poll(0):
        f = server.recv_multipart()
        if not is_probe(f, DEALER_ID_AT):
            early += 1
    step("sent")

    received = early
    while received < sent:
        if not server.poll(d.left_ms()):
            raise Fail("after the resume: %d of %d casts received in %.0fs"
                       % (received, sent, d.seconds))
        f = server.recv_multipart()
        if is_probe(f, DEALER_ID_AT):
            continue
        mid = b"p-%d" % received
        expect(f, [b"", V, CLIENT_ID, CAST, mid, body],
               "cast %d at the server (lost, duplicated or out of order)" % received)
        received += 1
    return {"sent": sent, "received": received, "received_while_paused": early}


if __name__ == "__main__":
    run(main)
