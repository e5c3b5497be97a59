"""A libzmq peer (Debian's python3-zmq) for the security package's tests.

Modes:
  server: bind a ROUTER on 127.0.0.1 (CURVE server with --secret, or PLAIN
          server with --users user:password,...), print "ENDPOINT tcp://...",
          echo every message back to its sender, until stdin closes.
  client: connect a DEALER to --endpoint (CURVE client with --server-key,
          --public, --secret; or PLAIN with --user, --password), send
          --count messages (deterministic, binary, some large), expect each
          echoed back byte for byte, print "RESULT <json>" with the hex of
          what it sent, and exit 0. With --attempt it only sends one
          message and waits for stdin to close (the server is expected to
          refuse it).

Run with /usr/bin/python3. A failed check prints FAIL on stderr, exit 1.
"""

import argparse
import json
import sys
import threading

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator


def messages(count):
    out = []
    for i in range(count):
        frames = [b"m%d" % i, b"", bytes(range(256)) * (i % 3)]
        if i % 5 == 4:
            frames.append(b"\xff" * 70000)  # long frames, > one 64 KiB read
        out.append(frames)
    return out


def wait_stdin():
    sys.stdin.readline()


def server(a):
    ctx = zmq.Context()
    auth = None
    s = ctx.socket(zmq.ROUTER)
    if a.secret:
        s.curve_server = True
        s.curve_secretkey = a.secret.encode()
    elif a.users:
        auth = ThreadAuthenticator(ctx)
        auth.start()
        auth.configure_plain(domain="*", passwords=dict(u.split(":", 1) for u in a.users.split(",")))
        s.plain_server = True
    s.linger = 0
    port = s.bind_to_random_port("tcp://127.0.0.1")
    print("ENDPOINT tcp://127.0.0.1:%d" % port, flush=True)
    stop = threading.Event()
    t = threading.Thread(target=lambda: (wait_stdin(), stop.set()), daemon=True)
    t.start()
    n = 0
    while not stop.is_set():
        if s.poll(100):
            m = s.recv_multipart()
            s.send_multipart(m)
            n += 1
    print("RESULT " + json.dumps({"echoed": n}), flush=True)
    s.close()
    if auth:
        auth.stop()
    ctx.term()


def client(a):
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.linger = 0
    s.identity = a.identity.encode()
    if a.server_key:
        s.curve_serverkey = a.server_key.encode()
        s.curve_publickey = a.public.encode()
        s.curve_secretkey = a.secret.encode()
    elif a.user:
        s.plain_username = a.user.encode()
        s.plain_password = a.password.encode()
    s.connect(a.endpoint)
    if a.attempt:
        s.send_multipart([b"attempt", b"must not arrive"])
        wait_stdin()
        s.close()
        ctx.term()
        print("RESULT {}", flush=True)
        return
    sent = messages(a.count)
    for m in sent:
        s.send_multipart(m)
    for i, want in enumerate(sent):
        if not s.poll(int(a.timeout * 1000)):
            print("FAIL: no echo of message %d within %ss" % (i, a.timeout), file=sys.stderr)
            sys.exit(1)
        got = s.recv_multipart()
        if got != want:
            print("FAIL: message %d: got %r, want %r" % (i, [f[:20] for f in got], [f[:20] for f in want]), file=sys.stderr)
            sys.exit(1)
    print("RESULT " + json.dumps({"sent": [[f.hex() for f in m] for m in sent]}), flush=True)
    s.close()
    ctx.term()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["server", "client"])
    p.add_argument("--secret", default="")
    p.add_argument("--public", default="")
    p.add_argument("--server-key", default="")
    p.add_argument("--users", default="")
    p.add_argument("--user", default="")
    p.add_argument("--password", default="")
    p.add_argument("--endpoint", default="")
    p.add_argument("--identity", default="py-client")
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--attempt", action="store_true")
    p.add_argument("--timeout", type=float, default=30.0)
    a = p.parse_args()
    server(a) if a.mode == "server" else client(a)


main()
