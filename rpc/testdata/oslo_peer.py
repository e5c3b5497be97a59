"""A libzmq peer speaking oslo.messaging's ZeroMQ frames, for interop tests.

  oslo_peer.py server IDENTITY BACKEND N [ACKS]   answer N messages, then print
      what came; ACKS 0 is oslo.messaging's default (rpc_use_acks off: no ACK),
      1 (the default here) ACKs every CALL and CAST
  oslo_peer.py client IDENTITY FRONTEND DEST MSG_ID METHOD ARGS_JSON REPEAT
      send one CALL REPEAT times with the same message id; print every frame
      received until REPEAT replies came. DEST redis://HOST:PORT/KEY reads
      the destination as oslo.messaging's client does: a live member of the
      Redis set KEY (one whose liveness key has TTL >= -1); FRONTEND
      redis://HOST:PORT reads the frontend from PUBLISHERS.

Output: one JSON line, frames as lists of latin-1 strings.
"""
import json
import sys

import zmq


def frames(msg):
    return [f.decode("latin-1") for f in msg]


def server(identity, backend, n, acks=True):
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.IDENTITY, identity.encode())
    s.setsockopt(zmq.LINGER, 2000)
    s.connect(backend)
    print(json.dumps({"ready": True}), flush=True)
    got = []
    for _ in range(n):
        if not s.poll(30000):
            break
        msg = s.recv_multipart()
        got.append(frames(msg))
        _, version, reply_id, typ, msg_id = msg[:5]
        if typ not in (b"1", b"2"):
            continue
        if acks:
            s.send_multipart([b"", b"1.0", b"6", reply_id, msg_id])
        if typ == b"1":
            ctxt, body = json.loads(msg[5])
            if body["method"] == "fail":
                failure = json.dumps({"class": "ValueError", "module": "builtins", "message": "libzmq says no",
                                      "tb": ["Traceback"], "args": ["libzmq says no"], "kwargs": {}})
                reply = json.dumps([None, failure])
            else:
                result = dict(body["args"])
                result["server"] = "libzmq"
                reply = json.dumps([result, None])
            s.send_multipart([b"", b"1.0", b"5", reply_id, msg_id, reply.encode()])
    print(json.dumps({"received": got}), flush=True)
    s.close()
    ctx.term()


def from_redis(url, key):
    import redis
    hostport = url[len("redis://"):].split("/", 1)[0]
    host, port = hostport.rsplit(":", 1)
    r = redis.Redis(host=host, port=int(port))
    live = sorted(m.decode() for m in r.smembers(key) if r.ttl(m) >= -1)
    if not live:
        raise SystemExit("no live member of " + key)
    return live[0]


def client(identity, frontend, dest, msg_id, method, args, repeat):
    if frontend.startswith("redis://"):
        frontend = "tcp://" + from_redis(frontend, "PUBLISHERS").split(",")[1]
    if dest.startswith("redis://"):
        dest = from_redis(dest, dest[len("redis://"):].split("/", 1)[1])
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.setsockopt(zmq.IDENTITY, identity.encode())
    s.setsockopt(zmq.LINGER, 0)
    s.connect(frontend)
    payload = json.dumps([{}, {"method": method, "args": json.loads(args)}]).encode()
    got, replies = [], 0
    for _ in range(repeat):
        s.send_multipart([b"", b"1.0", b"1", dest.encode(), msg_id.encode(), payload])
        while replies < _ + 1:
            if not s.poll(30000):
                print(json.dumps({"received": got, "timeout": True}), flush=True)
                return
            msg = s.recv_multipart()
            got.append(frames(msg))
            if msg[3] == b"5":
                replies += 1
    print(json.dumps({"received": got}), flush=True)
    s.close()
    ctx.term()


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server(sys.argv[2], sys.argv[3], int(sys.argv[4]), len(sys.argv) < 6 or sys.argv[5] != "0")
    else:
        client(*sys.argv[2:8], int(sys.argv[8]))
