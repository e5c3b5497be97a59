"""A libzmq proxy for the CURVE throughput comparison (curve_bench_test.go).

A ROUTER on --fe and a DEALER on --be joined by zmq.proxy (libzmq's own
device, in C), both CURVE servers with --secret (Z85) and no ZAP handler,
so any client key is accepted (libzmq's "Stonehouse" without a list).
Prints "READY" once bound; runs until killed.
"""

import argparse

import zmq


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--fe", required=True)
    p.add_argument("--be", required=True)
    p.add_argument("--secret", default="")
    a = p.parse_args()
    ctx = zmq.Context()
    fe, be = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
    for s in (fe, be):
        s.setsockopt(zmq.LINGER, 0)
        if a.secret:
            s.curve_server = True
            s.curve_secretkey = a.secret.encode()
    fe.bind(a.fe)
    be.bind(a.be)
    print("READY", flush=True)
    zmq.proxy(fe, be)


main()
