"""Shared helpers for the e2e peer scripts.

The scripts are libzmq peers (Debian's python3-zmq) that talk to a proxy
under test with the oslo.messaging ZeroMQ wire protocol, version "1.0".
Run them with /usr/bin/python3.

Conventions with the Go test driver (e2e/helpers_test.go):
  - "STEP <name>" on stdout: the script waits for one line on stdin before it
    goes on, so that the driver can look at the proxy (metrics, RSS) at a
    known point;
  - "RESULT <json>" on stdout, last: what happened, for the driver's log and
    checks; exit status 0;
  - on a failed check: "FAIL: <reason>" on stderr and exit status 1.

Every wait has a deadline (--timeout, a failure bound, never a pace).
Messages whose id starts with b"probe-" are warm-up probes: they are sent
until the destination has seen one (a ROUTER drops a message for an identity
it has not seen yet; a SUB's subscription takes a while to reach the PUB),
and every receiver skips them.
"""

import argparse
import json
import os
import sys
import time
import traceback

import zmq

V = b"1.0"
CALL, CAST, FANOUT, NOTIFY, REPLY, ACK = b"1", b"2", b"3", b"4", b"5", b"6"
PROBE = b"probe-"
PROBE_INTERVAL = 0.05  # seconds between warm-up probes

# Where the message id sits in what each kind of receiver gets.
#   DEALER (server or client): ["", "1.0", peer_id, type, msg_id, payload...]
#   SUB:                       [topic, "1.0", type, msg_id, payload...]
DEALER_ID_AT = 4
SUB_ID_AT = 3


class Fail(Exception):
    """A failed check: the message says what was expected and what came."""


def parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--fe", help="frontend endpoint, tcp://host:port")
    p.add_argument("--be", default="", help="backend endpoint ('' = single-router)")
    p.add_argument("--pub", help="publisher endpoint")
    p.add_argument("--fe-id", default="",
                   help="the proxy's frontend identity if known ('' = any non-empty)")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="failure bound of each wait, in seconds")
    return p


def options(description, **extra):
    """Parses the common options and one --NAME per keyword (NAME's
    underscores become dashes; the keyword's value is the default and gives
    the type), and returns (args, Deadline(args.timeout))."""
    p = parser(description)
    for name, default in extra.items():
        p.add_argument("--" + name.replace("_", "-"), type=type(default), default=default)
    args = p.parse_args()
    return args, Deadline(args.timeout)


def run(main):
    """Runs main() and reports: RESULT line and exit 0, or FAIL and exit 1."""
    try:
        result = main() or {}
    except Fail as e:
        print("FAIL: %s" % e, file=sys.stderr, flush=True)
        sys.exit(1)
    except Exception:  # pylint: disable=broad-except
        traceback.print_exc()
        sys.exit(1)
    print("RESULT " + json.dumps(result, sort_keys=True), flush=True)
    sys.exit(0)


def step(name):
    """Tells the driver we reached a step and waits until it says go on."""
    print("STEP " + name, flush=True)
    if not sys.stdin.readline():
        raise Fail("the test driver closed stdin at step %s" % name)


class Deadline:
    def __init__(self, seconds):
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def left_ms(self):
        return max(0, int((self.end - time.monotonic()) * 1000))

    def expired(self):
        return time.monotonic() >= self.end


class Driver:
    """The test driver's commands while traffic flows: lines on stdin, read
    as they come. what ends the failure when stdin closes ("while casts
    were flowing")."""

    def __init__(self, poller, what):
        self.fd = sys.stdin.fileno()
        self.what = what
        self.pending = b""
        poller.register(self.fd, zmq.POLLIN)

    def lines(self, ready):
        """The whole lines written since the last call, if stdin is in
        ready (what poller.poll returned, as a dict)."""
        if self.fd not in ready:
            return []
        data = os.read(self.fd, 4096)
        if not data:
            raise Fail("the test driver closed stdin %s" % self.what)
        self.pending += data
        lines = []
        while b"\n" in self.pending:
            line, self.pending = self.pending.split(b"\n", 1)
            lines.append(line)
        return lines


def poll_until(poller, *times):
    """Polls until the earliest of times (time.monotonic() values) at the
    latest, and returns what is ready as a dict."""
    wait = max(0.0, min(times) - time.monotonic())
    return dict(poller.poll(int(wait * 1000) + 1))


def slow_subscriber_flood(args, d, client_id, slow_at, readers_at):
    """A SUB that never reads after its warm-up probe ("slow", RCVHWM 10,
    small RCVBUF, on slow_at) and one reader per endpoint of readers_at, all
    on topic "flood"; a client DEALER (client_id on args.fe) floods them
    (see flood). STEP flooded; returns the result."""
    client = connect(zmq.DEALER, args.fe, identity=client_id,
                     opts={zmq.SNDTIMEO: int(args.timeout * 1000)})
    slow = subscriber(slow_at, [b"flood"], opts={zmq.RCVHWM: 10, zmq.RCVBUF: 4096})
    readers = [subscriber(ep, [b"flood"]) for ep in readers_at]
    warm_subs(client, [(s, b"flood.probe") for s in [slow] + readers], d)

    sent, got = flood(client, readers, args.count, args.size, d, args.timeout)
    step("flooded")
    return {"published": sent, "readers": got}


def ctx():
    return zmq.Context.instance()


def security_opts():
    """CURVE or PLAIN client options from the environment, so that every
    script can run through a proxy that requires them (e2e/security_test.go):
    ZP_CURVE_SERVER_KEY, ZP_CURVE_PUBLIC_KEY, ZP_CURVE_SECRET_KEY (Z85), or
    ZP_PLAIN_USER and ZP_PLAIN_PASSWORD. None set: NULL, no options."""
    env = os.environ
    if env.get("ZP_CURVE_SERVER_KEY"):
        return {zmq.CURVE_SERVERKEY: env["ZP_CURVE_SERVER_KEY"].encode(),
                zmq.CURVE_PUBLICKEY: env["ZP_CURVE_PUBLIC_KEY"].encode(),
                zmq.CURVE_SECRETKEY: env["ZP_CURVE_SECRET_KEY"].encode()}
    if env.get("ZP_PLAIN_USER"):
        return {zmq.PLAIN_USERNAME: env["ZP_PLAIN_USER"].encode(),
                zmq.PLAIN_PASSWORD: env.get("ZP_PLAIN_PASSWORD", "").encode()}
    return {}


def connect(kind, endpoint, identity=None, opts=None, monitor=False):
    """A connected socket, LINGER 0, options set before connect.

    With monitor=True it returns (socket, monitor socket)."""
    s = ctx().socket(kind)
    s.setsockopt(zmq.LINGER, 0)
    for k, v in security_opts().items():
        s.setsockopt(k, v)
    if identity is not None:
        s.setsockopt(zmq.IDENTITY, identity)
    for k, v in (opts or {}).items():
        s.setsockopt(k, v)
    mon = s.get_monitor_socket() if monitor else None
    s.connect(endpoint)
    return (s, mon) if monitor else s


def subscriber(endpoint, topics, opts=None):
    s = connect(zmq.SUB, endpoint, opts=opts)
    for t in topics:
        s.setsockopt(zmq.SUBSCRIBE, t)
    return s


def recv(sock, deadline, what):
    """One whole message, or Fail when the deadline passes."""
    if not sock.poll(deadline.left_ms()):
        raise Fail("timed out after %.0fs waiting for %s" % (deadline.seconds, what))
    return sock.recv_multipart()


def is_probe(frames, id_at):
    return len(frames) > id_at and frames[id_at].startswith(PROBE)


def recv_real(sock, deadline, what, id_at=DEALER_ID_AT):
    """The next message that is not a warm-up probe."""
    while True:
        frames = recv(sock, deadline, what)
        if not is_probe(frames, id_at):
            return frames


def expect(got, want, what):
    if got != want:
        raise Fail("%s: got %r, want %r" % (what, got, want))


def direct(msg_type, key, msg_id, *payload):
    """What a DEALER sends for a direct or fanout message."""
    return [b"", V, msg_type, key, msg_id] + list(payload)


def warm_direct(sender, dest_id, dest, deadline, probe_type=CAST):
    """Sends probes from sender to the identity dest_id until dest (the
    DEALER with that identity) has received one. Returns the probes sent."""
    n = 0
    while True:
        sender.send_multipart(direct(probe_type, dest_id, b"probe-%d" % n, b"probe"))
        n += 1
        if dest.poll(int(PROBE_INTERVAL * 1000)):
            frames = dest.recv_multipart()
            if not is_probe(frames, DEALER_ID_AT):
                raise Fail("warm-up to %r: got %r, want a probe" % (dest_id, frames))
            return n
        if deadline.expired():
            raise Fail("warm-up: %r got none of %d probes in %.0fs (the proxy never "
                       "routed to that identity)" % (dest_id, n, deadline.seconds))


def warm_subs(sender, subs, deadline, msg_type=FANOUT):
    """Publishes probes through the proxy until each SUB has one.

    subs: list of (sub socket, topic it matches). Returns the probes sent."""
    pending = list(subs)
    n = 0
    while pending:
        for _, topic in pending:
            sender.send_multipart(direct(msg_type, topic, b"probe-%d" % n, b"probe"))
            n += 1
        end = time.monotonic() + PROBE_INTERVAL
        while pending:
            left = int((end - time.monotonic()) * 1000)
            if left <= 0:
                break
            poller = zmq.Poller()
            for sub, _ in pending:
                poller.register(sub, zmq.POLLIN)
            ready = dict(poller.poll(left))
            for sub, _ in pending:
                if sub in ready:
                    sub.recv_multipart()
            pending = [(sub, t) for sub, t in pending if sub not in ready]
        if pending and deadline.expired():
            raise Fail("warm-up: subscribers for %r got none of %d probes in %.0fs"
                       % ([t for _, t in pending], n, deadline.seconds))
    return n


WINDOW = 100


def flood(client, readers, count, size, d, timeout):
    """Publish count fanout messages of size bytes on topic "flood" through
    client, windowed on what the slowest reader has received, and check that
    every reader gets every one, in order. Returns (sent, got)."""
    body = b"\x01" * size
    got = [0] * len(readers)
    poller = zmq.Poller()
    for r in readers:
        poller.register(r, zmq.POLLIN)

    def take(timeout_ms):
        ready = dict(poller.poll(timeout_ms))
        for n, r in enumerate(readers):
            if r not in ready:
                continue
            while r.poll(0):
                f = r.recv_multipart()
                if is_probe(f, SUB_ID_AT):
                    continue
                mid = b"m-%d" % got[n]
                if f[:4] != [b"flood", V, FANOUT, mid]:
                    raise Fail("reader %d: message %d: got %r, want %r"
                               % (n, got[n], f[:4], [b"flood", V, FANOUT, mid]))
                expect(f[4:], [body], "reader %d: payload of %r" % (n, mid))
                got[n] += 1

    sent = 0
    try:
        while sent < count:
            if sent - min(got) >= WINDOW:
                take(d.left_ms())
                if sent - min(got) >= WINDOW and d.expired():
                    raise Fail("timed out after %.0fs: readers have %r of %d"
                               % (d.seconds, got, sent))
                continue
            client.send_multipart(direct(FANOUT, b"flood", b"m-%d" % sent, body))
            sent += 1
            take(0)
    except zmq.Again:
        raise Fail("the client's send blocked for %.0fs after %d messages: the proxy "
                   "stopped reading its frontend" % (timeout, sent)) from None
    while min(got) < sent:
        take(d.left_ms())
        if min(got) < sent and d.expired():
            raise Fail("timed out after %.0fs: readers have %r of %d"
                       % (d.seconds, got, sent))
    return sent, got
