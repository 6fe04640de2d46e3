#!/usr/bin/env python3
"""How faithful a gpuwire-netem path is: the median 1-byte ping-pong time over
plain loopback TCP and through a gpuwire-netem with given settings in front of
an echo server, and the median time of a 1-byte request answered with
200 KB (a decoded token's logits: a 50257-word vocabulary in float32). The
excess over the set RTT (and, for the 200 KB answer, its time at the set
bandwidth) is the emulator's own cost (one more hop each way, timer
wake-ups, waiting for a CPU), included in every number measured behind it;
benchmarks record it beside their emulated rows.

    bench/netem_check.py --netem BIN --rtt-us 500,2000 [--mbps 10000] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import socket
import subprocess
import threading
import time


REPLY_BYTES = 200 * 1024
_REPLY = b"r" * REPLY_BYTES


def _answer(c: socket.socket) -> None:
    """Echoes each byte, except "L", answered with REPLY_BYTES."""
    for d in iter(lambda: c.recv(64), b""):
        c.sendall(_REPLY if d == b"L" else d)


def _echo_server() -> tuple[socket.socket, int]:
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(8)

    def serve():
        while True:
            try:
                c, _ = ls.accept()
            except OSError:
                return
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=_answer, args=(c,), daemon=True).start()
    threading.Thread(target=serve, daemon=True).start()
    return ls, ls.getsockname()[1]


def _pingpong(port: int, n: int, ask: bytes = b"x", want: int = 1) -> float:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ts = []
        for _ in range(n):
            t = time.perf_counter()
            s.sendall(ask)
            got = 0
            while got < want:
                got += len(s.recv(want - got))
            ts.append(time.perf_counter() - t)
    ts.sort()
    return ts[len(ts) // 2]


def check(netem: str, paths: list[tuple[str, float, float]]) -> dict:
    """paths: (name, rtt in seconds, bandwidth in Mbit/s, 0 unlimited). Medians in ms,
    keyed loopback_tcp_ms and NAME_ms; the emulator's banner line as NAME_banner."""
    ls, up = _echo_server()
    out: dict = {"loopback_tcp_ms": None}
    try:
        out["loopback_tcp_ms"] = round(_pingpong(up, 500) * 1e3, 4)
        out["loopback_tcp_reply200k_ms"] = round(_pingpong(up, 200, b"L", REPLY_BYTES) * 1e3, 4)
        for name, rtt_s, mbps in paths:
            with socket.socket() as tmp:
                tmp.bind(("127.0.0.1", 0))
                port = tmp.getsockname()[1]
            proc = subprocess.Popen([netem, "--listen", f"127.0.0.1:{port}", "--to", f"127.0.0.1:{up}",
                                     "--rtt-us", str(rtt_s * 1e6), "--bandwidth-mbps", str(mbps)],
                                    stderr=subprocess.PIPE, text=True)
            try:
                for _ in range(100):
                    try:
                        socket.create_connection(("127.0.0.1", port), timeout=1).close()
                        break
                    except OSError:
                        time.sleep(0.02)
                out[f"{name}_ms"] = round(_pingpong(port, 300 if rtt_s < 1e-3 else 60) * 1e3, 4)
                out[f"{name}_reply200k_ms"] = round(
                    _pingpong(port, 100 if rtt_s < 1e-3 else 40, b"L", REPLY_BYTES) * 1e3, 4)
            finally:
                proc.terminate()
                banner = (proc.communicate(timeout=5)[1] or "").strip().splitlines()
                out[f"{name}_banner"] = banner[0] if banner else ""
    except (OSError, ValueError, subprocess.TimeoutExpired) as e:
        out["error"] = str(e)
    finally:
        ls.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--netem", required=True, help="the gpuwire-netem binary")
    ap.add_argument("--rtt-us", required=True, help="comma-separated RTTs in microseconds")
    ap.add_argument("--mbps", type=float, default=0, help="bandwidth each way, Mbit/s (0: unlimited)")
    ap.add_argument("--json", help="also write the result here")
    a = ap.parse_args()
    paths = [(f"{int(float(us))}us", float(us) / 1e6, a.mbps) for us in a.rtt_us.split(",") if us]
    out = check(a.netem, paths)
    print(f"netem check (median 1-byte ping-pong; reply200k: a 200 KB answer): {json.dumps(out)}", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    return 1 if "error" in out else 0


if __name__ == "__main__":
    raise SystemExit(main())
