#!/usr/bin/env python3
"""Raw TCP loopback throughput on this machine: one sender streaming N MiB to a
receiver over 127.0.0.1, with 1..K parallel connections, in chunks of 4 MiB.
The ceiling for gpuwire's host-to-device copies over loopback (bench/ bandwidth).
Usage: tools/tcp-speed.py [MIB=1024] [MAX_STREAMS=4]"""
import socket
import sys
import threading
import time

MIB = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
STREAMS = int(sys.argv[2]) if len(sys.argv) > 2 else 4
CHUNK = 4 << 20


def run(streams, cold=False):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(streams)
    port = srv.getsockname()[1]
    per = MIB * (1 << 20) // streams

    def receive(conn):
        buf = bytearray(CHUNK)
        view, left = memoryview(buf), per
        while left:
            n = conn.recv_into(view, min(CHUNK, left))
            if not n:
                break
            left -= n
        conn.close()

    def send():
        s = socket.create_connection(("127.0.0.1", port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # hot: one 4 MiB buffer again and again; cold: a buffer as big as the
        # stream, written first, as an application's copy source is
        data = sources.pop()
        view, off = memoryview(data), 0
        while off < per:
            k = min(CHUNK, per - off)
            s.sendall(view[off % len(data):off % len(data) + k])
            off += k
        s.close()

    sources = [bytearray(b"\x5a") * per if cold else bytes(CHUNK) for _ in range(streams)]
    senders = [threading.Thread(target=send) for _ in range(streams)]
    t0 = time.perf_counter()
    for t in senders:
        t.start()
    receivers = []
    for _ in range(streams):
        conn, _ = srv.accept()
        r = threading.Thread(target=receive, args=(conn,))
        r.start()
        receivers.append(r)
    for t in senders + receivers:
        t.join()
    dt = time.perf_counter() - t0
    srv.close()
    return MIB * (1 << 20) / dt / 1e9


for k in range(1, STREAMS + 1):
    print(f"tcp-speed: {MIB} MiB over {k} loopback connection(s): {run(k):.2f} GB/s"
          f" (from a cold {MIB // k} MiB buffer: {run(k, cold=True):.2f} GB/s)")
