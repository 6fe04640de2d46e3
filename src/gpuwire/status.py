"""`gpuwire status`: ask a server how it is, as a client would reach it.

It connects, sends a HELLO marked as a status probe (no worker starts),
authenticates if asked to, and reads the server's JSON status. Then it times
small echo frames, answered by the server's Python control plane (network RTT
plus tens of microseconds of Python turnaround; calls answered by the native
worker see about the same), and large ones (throughput each way through the
same path: a lower bound for bulk copies, which the worker moves without Python).
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import struct
import sys
import time

from gpuwire import address as addresses
from gpuwire import protocol, tls
from gpuwire.auth import AuthError, client_token, make_proof


class StatusError(Exception):
    pass


def handshake(sock: socket.socket, ext: bytes, token: str | None, timeout: float = 30.0,
              prog: str = "gpuwire-status", on_queued=None) -> tuple[protocol.Header, bytes]:
    """Send a HELLO with extension records `ext`, answer a CHALLENGE with `token`,
    pass QUEUED frames to on_queued(position, waiting, waited_s, text), and
    return the first other frame (HELLO_OK, STATUS or ERROR). A Python client
    of the control plane, as the C client implements it."""
    sock.sendall(protocol.pack_hello(os.getpid(), socket.gethostname()[:255], prog, 0, ext=ext))
    while True:
        hdr, payload = protocol.recv_frame(sock, time.monotonic() + timeout)
        if hdr.op == protocol.OP_CHALLENGE:
            if len(payload) != protocol.NONCE_SIZE:
                raise StatusError(f"server sent a CHALLENGE of {len(payload)} bytes")
            if not token:
                raise StatusError("the server requires a token: set GPUWIRE_TOKEN (or GPUWIRE_TOKEN_FILE, or "
                                  "--token-file) to one made by `gpuwire token create` on the server")
            sock.sendall(protocol.pack_frame(protocol.OP_PROOF, make_proof(token, payload)))
        elif hdr.op == protocol.OP_QUEUED:
            if on_queued is not None:
                on_queued(*protocol.parse_queued(payload))
        else:
            return hdr, payload


def _echo(sock: socket.socket, want: int, filler: bytes = b"", seq: int = 0) -> float:
    t0 = time.perf_counter()
    sock.sendall(protocol.pack_frame(protocol.OP_STATUS, struct.pack("<I", want) + filler, seq=seq))
    hdr, payload = protocol.recv_frame(sock, time.monotonic() + 30)
    if hdr.op != protocol.OP_STATUS or len(payload) != want:
        raise StatusError(f"unexpected echo answer op {hdr.op} ({len(payload)} bytes)")
    return time.perf_counter() - t0


def probe(address: str, token: str | None = None, rounds: int = 20, bw_bytes: int = 4 << 20,
          timeout: float = 10.0, tls_settings: tls.ClientTLS | None = None) -> dict:
    """Status of the server at `address` as a dict: the server's own JSON under
    "status", plus "connect_s", "rtt_s" (list), "up_Bps"/"down_Bps" and "tls"
    (version and cipher, or None). TLS as the settings say (default: from the
    environment, as the client library reads it)."""
    host, port = addresses.parse(address)
    t0 = time.perf_counter()
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except OSError as e:
        raise StatusError(f"cannot reach {address}: {e.strerror or e}") from e
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock = tls.wrap_client(sock, host, tls_settings or tls.client_settings(), timeout)
    except (tls.TLSError, OSError) as e:
        sock.close()
        raise StatusError(f"{address}: {e}") from e
    tls_info = None
    if hasattr(sock, "cipher"):
        cipher = sock.cipher()
        tls_info = {"version": sock.version(), "cipher": cipher[0] if cipher else None}
    with sock:
        connect_s = time.perf_counter() - t0
        try:
            hdr, payload = handshake(sock, protocol.pack_ext(status_probe=True), token, timeout)
            if hdr.op == protocol.OP_ERROR:
                code, msg = protocol.parse_error(payload)
                raise StatusError(f"server refused: {msg} ({protocol.ERROR_NAMES.get(code, code)})")
            if hdr.op == protocol.OP_HELLO_OK:
                raise StatusError("the server started a session instead of answering the status probe "
                                  "(an older gpuwire server without status support)")
            if hdr.op != protocol.OP_STATUS:
                raise StatusError(f"unexpected answer op {hdr.op} to the status probe")
            status = json.loads(payload)
            rtts = [_echo(sock, 0, seq=i) for i in range(max(1, rounds))]
            up = down = None
            if bw_bytes > 0:
                n = min(bw_bytes, protocol.MAX_PAYLOAD - 4)
                base = min(rtts)
                t_up = min(_echo(sock, 0, bytes(n)) for _ in range(2))
                t_down = min(_echo(sock, n) for _ in range(2))
                up = n / max(t_up - base, 1e-9)
                down = n / max(t_down - base, 1e-9)
            try:
                sock.sendall(protocol.pack_frame(protocol.OP_BYE))
            except OSError:
                pass
        except (protocol.ProtocolError, OSError, ValueError, AuthError) as e:
            raise StatusError(f"{address}: {getattr(e, 'message', None) or e}") from e
    return {"address": address, "status": status, "connect_s": connect_s, "rtt_s": rtts, "up_Bps": up,
            "down_Bps": down, "bw_bytes": bw_bytes, "tls": tls_info}


def _bytes(n: float | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return str(n)


def _rate(bps: float | None) -> str:
    return "?" if bps is None else f"{bps / 1e6:.0f} MB/s" if bps < 1e9 else f"{bps / 1e9:.2f} GB/s"


def _age(s: float | None) -> str:
    if s is None:
        return "-"
    s = int(s)
    return f"{s}s" if s < 120 else f"{s // 60}m" if s < 7200 else f"{s // 3600}h{s % 3600 // 60:02d}m"


def gpu_line(g: dict) -> str:
    text = f"GPU {g['index']}  {g.get('name') or '?'}"
    if "memory_total" in g:
        text += f"  {_bytes(g['memory_used'])} / {_bytes(g['memory_total'])} used"
    if "utilization" in g:
        text += f"  {g['utilization'] * 100:.0f}% busy"
    if "temperature_c" in g:
        text += f"  {g['temperature_c']} C"
    return text


def lease_lines(leases: dict) -> list[str]:
    held, queued = leases.get("held", []), leases.get("queued", [])
    excl = sum(1 for h in held if h["mode"] == "exclusive")
    out = [f"{len(held)} held ({excl} exclusive, {len(held) - excl} shared), {len(queued)} waiting"]
    for h in held:
        cap = f", cap {_bytes(h['mem_cap'])}" if h.get("mem_cap") else ""
        out.append(f"  {h['mode']:9} GPU {','.join(map(str, h['gpus']))}  {h['owner']}  for {_age(h['held_s'])}{cap}")
    for i, q in enumerate(queued, 1):
        out.append(f"  waiting #{i} {q['mode']} GPU {','.join(map(str, q['gpus']))}  {q['owner']}  "
                   f"for {_age(q['waited_s'])}")
    return out


def format_report(r: dict) -> str:
    st = r["status"]
    srv, drv = st.get("server", {}), st.get("driver", {})
    rtt = r["rtt_s"]
    t = r.get("tls")
    how = f"{t['version']} {t['cipher']}, connect and TLS handshake" if t else "TCP connect"
    lines = [f"gpuwire server {r['address']}: reachable ({how} {r['connect_s'] * 1e3:.2f} ms)",
             f"  server     gpuwire {srv.get('version')}, protocol {srv.get('proto_version')}, "
             f"up {_age(srv.get('uptime_s'))}, auth {'tokens' if srv.get('auth') else 'off'}",
             f"  driver     {drv.get('desc') or drv.get('kind')} ({drv.get('kind')}, CUDA driver API "
             f"{drv.get('version')}), {drv.get('device_count')} device(s)"]
    for g in st.get("gpus", []):
        lines.append(f"  {gpu_line(g)}")
    ll = lease_lines(st.get("leases", {}))
    lines.append(f"  leases     {ll[0]}")
    lines += [f"           {x}" for x in ll[1:]]
    tot = st.get("totals", {})
    lines.append(f"  sessions   {tot.get('sessions_active', 0)} active, {tot.get('sessions_started', 0)} since start")
    lines.append(f"  RTT        min {min(rtt) * 1e3:.3f} ms, median {statistics.median(rtt) * 1e3:.3f} ms "
                 f"over {len(rtt)} round trips (echo frames through the server's control plane)")
    if r["up_Bps"] is not None:
        lines.append(f"  bandwidth  up {_rate(r['up_Bps'])}, down {_rate(r['down_Bps'])} "
                     f"({_bytes(r['bw_bytes'])} frames through the control plane; a lower bound for the worker)")
    return "\n".join(lines)


def _one(address: str, what: str, token_file: str | None, rounds: int,
         bw_bytes: int) -> tuple[str, dict | None, str]:
    """(address as normalized, report, error text) for one server of the list."""
    try:
        address = addresses.normalize(address, what=what)
        return address, probe(address, client_token(token_file=token_file), rounds=rounds, bw_bytes=bw_bytes), ""
    except (ValueError, AuthError, StatusError) as e:
        return address, None, str(e)


def main(server: str | None, token_file: str | None, as_json: bool, rounds: int, bw_bytes: int) -> int:
    """One server, or each of a comma-separated list (GPUWIRE_SERVER=a,b, as
    `gpuwire run` takes it: docs/multi-gpu.md); 1 if any did not answer."""
    text = server or os.environ.get("GPUWIRE_SERVER") or addresses.DEFAULT_SERVER
    what = "--server" if server else "GPUWIRE_SERVER" if os.environ.get("GPUWIRE_SERVER") else "address"
    entries = [e.strip() for e in text.split(",")]
    results = [_one(e, what, token_file, rounds, bw_bytes) for e in entries]
    if as_json:
        objs = [dict(r, reachable=True) if r is not None else {"address": e, "reachable": False, "error": err}
                for e, r, err in results]
        print(json.dumps(objs[0] if len(objs) == 1 else {"servers": objs}, indent=1))
    else:
        for i, (e, r, err) in enumerate(results):
            if len(results) > 1:
                print(("\n" if i else "") + f"== server {i} of the list ({e}): GPUs "
                      f"{'after those of the servers before it' if i else 'first'} in a program's device list")
            if r is None:
                print(f"gpuwire status: {err}", file=sys.stderr)
                if len(results) > 1:
                    print(f"  not reachable: {err}")
            else:
                print(format_report(r))
    return 0 if all(r is not None for _, r, _ in results) else 1
