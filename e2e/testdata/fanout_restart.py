"""Continuous fanout while the driver kills and restarts a central proxy.

One SUB (filter "fan") per --node, a node's local publisher. Every
--interval seconds a client publishes two fanout messages: "s-<n>" (topic
"fan.s") through the --survivor central proxy, which stays up, and
"r<gen>-<n>" (topic "fan.r") through the --restart central proxy, which the
driver kills. On "restart <frontend>" on stdin the client drops its DEALER
to the old proxy (and what it queued) and connects a new one to the given
frontend (the same address or a new one): generation gen+1. On "stop" it
stops sending and checks:

  - every SUB got every "s-" message exactly once, in order: the restart
    of one central proxy does not disturb the fanout of another;
  - every SUB got messages of the last generation, each at most once, in
    order, and with no gap after the first one: once fanout has resumed
    through the new proxy, nothing is lost.

STEP warm: after the warm-up (a probe through each central proxy at every
SUB). Then on stdout:
  PROGRESS <sent> <received by the SUB that has fewest>   every 50 ms
  FIRST <gen> <sub>   when SUB <sub> gets the first message of generation
                      <gen> > 1 (the first through the restarted proxy)
RESULT: counts, and each SUB's gap between the last message of one
generation and the first of the next, in ms.
"""

import time

import zmq

from zpeer import (FANOUT, SUB_ID_AT, V, Deadline, Driver, Fail, connect,
                   direct, is_probe, parser, poll_until, run, step, subscriber,
                   warm_subs)

PROGRESS_EVERY = 0.05


class Sub:
    def __init__(self, i, endpoint):
        self.i = i
        self.sock = subscriber(endpoint, [b"fan"])
        self.s = []        # sequence numbers of the "s-" messages, in arrival order
        self.r = {}        # gen -> sequence numbers of "r<gen>-", in arrival order
        self.last_at = {}  # gen -> when its last message arrived
        self.first_at = {}  # gen -> when its first message arrived


def main():
    p = parser(__doc__)
    p.add_argument("--survivor", required=True, help="frontend of the central proxy that stays up")
    p.add_argument("--restart", required=True, help="frontend of the central proxy the driver restarts")
    p.add_argument("--node", action="append", required=True, help="a node's local publisher")
    p.add_argument("--interval", type=float, default=0.005)
    args = p.parse_args()
    d = Deadline(args.timeout)
    survivor = connect(zmq.DEALER, args.survivor, identity=b"fanout-client/survivor")
    restart = connect(zmq.DEALER, args.restart, identity=b"fanout-client/r1")
    subs = [Sub(i, ep) for i, ep in enumerate(args.node)]
    by_sock = {s.sock: s for s in subs}
    probes = warm_subs(survivor, [(s.sock, b"fan.probe") for s in subs], d)
    probes += warm_subs(restart, [(s.sock, b"fan.probe") for s in subs], d)
    step("warm")

    poller = zmq.Poller()
    for s in subs:
        poller.register(s.sock, zmq.POLLIN)
    driver = Driver(poller, "while fanout was flowing")
    gen = 1
    sent_s = 0
    sent_r = {1: 0}
    unsent_r = 0  # sends to the restarted proxy that its DEALER refused (no peer, queue full)

    def take():
        for s in subs:
            while s.sock.poll(0):
                f = s.sock.recv_multipart()
                if is_probe(f, SUB_ID_AT):
                    continue
                now = time.monotonic()
                mid = f[SUB_ID_AT]
                if f[0] == b"fan.s" and mid.startswith(b"s-"):
                    s.s.append(int(mid[2:]))
                elif f[0] == b"fan.r" and mid.startswith(b"r"):
                    g, n = (int(x) for x in mid[1:].split(b"-"))
                    if g not in s.r:
                        s.r[g] = []
                        s.first_at[g] = now
                        if g > 1:
                            print("FIRST %d %d" % (g, s.i), flush=True)
                    s.r[g].append(n)
                    s.last_at[g] = now
                else:
                    raise Fail("SUB %d: unexpected %r" % (s.i, f))
                if f[1:3] != [V, FANOUT] or f[4:] != [b"body\x00" + mid]:
                    raise Fail("SUB %d: got %r, want [topic, %r, %r, %r, body]"
                               % (s.i, f, V, FANOUT, mid))

    next_send = next_progress = time.monotonic()
    stopping = False
    while not stopping:
        now = time.monotonic()
        if now >= next_send:
            mid = b"s-%d" % sent_s
            survivor.send_multipart(direct(FANOUT, b"fan.s", mid, b"body\x00" + mid))
            sent_s += 1
            mid = b"r%d-%d" % (gen, sent_r[gen])
            try:
                restart.send_multipart(direct(FANOUT, b"fan.r", mid, b"body\x00" + mid), zmq.NOBLOCK)
            except zmq.Again:
                unsent_r += 1
            sent_r[gen] += 1
            next_send += args.interval
            if next_send < now:  # a stall: do not burst to catch up
                next_send = now + args.interval
        if now >= next_progress:
            print("PROGRESS %d %d" % (sent_s, min(len(s.s) for s in subs)), flush=True)
            next_progress = now + PROGRESS_EVERY
        ready = poll_until(poller, next_send, next_progress)
        take()
        for line in driver.lines(ready):
            cmd = line.decode().split()
            if cmd == ["stop"]:
                stopping = True
            elif len(cmd) == 2 and cmd[0] == "restart":
                restart.close(linger=0)
                gen += 1
                sent_r[gen] = 0
                restart = connect(zmq.DEALER, cmd[1], identity=b"fanout-client/r%d" % gen)
            else:
                raise Fail("unknown command %r" % line)
        if d.expired():
            raise Fail("still sending after %.0fs with no stop from the driver" % d.seconds)

    # The last "s-" and "r<gen>-" messages are the last on their paths.
    d = Deadline(args.timeout)
    while True:
        take()
        short = [s.i for s in subs
                 if (s.s[-1:] != [sent_s - 1]) or (s.r.get(gen, [])[-1:] != [sent_r[gen] - 1])]
        if not short:
            break
        if d.expired():
            raise Fail("timed out after %.0fs waiting for the last messages at SUBs %r"
                       % (d.seconds, short))
        poller.poll(50)

    gaps = {}
    for s in subs:
        if s.s != list(range(sent_s)):
            missing = sorted(set(range(sent_s)) - set(s.s))
            raise Fail("SUB %d: %d of %d messages through the surviving proxy; missing %r..., "
                       "duplicates or out of order: %r"
                       % (s.i, len(s.s), sent_s, missing[:10], len(s.s) != len(set(s.s))))
        got = s.r[gen]
        if got != list(range(got[0], sent_r[gen])):
            raise Fail("SUB %d: generation %d: got %d messages from %d, want all of %d..%d"
                       % (s.i, gen, len(got), got[0], got[0], sent_r[gen] - 1))
        for g, seqs in s.r.items():
            if len(seqs) != len(set(seqs)) or seqs != sorted(seqs):
                raise Fail("SUB %d: generation %d duplicated or out of order" % (s.i, g))
        gaps[s.i] = {g: round((s.first_at[g] - s.last_at[g - 1]) * 1000)
                     for g in s.r if g > 1 and g - 1 in s.last_at}
    return {"probes": probes, "sent_survivor": sent_s, "sent_restart": sent_r,
            "unsent_restart": unsent_r, "generations": gen,
            "first_of_last_gen": {s.i: s.r[gen][0] for s in subs},
            "delivery_gap_ms": gaps}


if __name__ == "__main__":
    run(main)
