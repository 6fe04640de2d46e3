"""Soak (issue 18): for about half a minute, all at once against one stand-in
server, honest clients run real CUDA test programs in a loop while a client
that never reads its replies floods the backlog, a peer without a token holds
and reopens a flood of connections, and a client's machine vanishes (its
network namespace's link goes down). The honest clients must finish with
correct data (the programs check every result and exit 0), the server's and
every worker's memory stay bounded, the stalled and the vanished sessions end,
and every lease is freed. Needs root and iproute2 (the vanishing client's
namespace); CI runs as root."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import GPUWIRE, PROGRAMS_DIR, gpuwire_env, native_client_lib
from test_dead_peer import HOLDER, NS_IF, SERVER_IP, _ip, _start_server, netns  # noqa: F401 (fixture)
from test_session_backlog import BIG, CHUNK, DTOH, HTOD, Raw, rss_mib

SECONDS = 25
HONEST = ["vector_add_shared", "memcpy_kinds_shared", "lane_copies"]
SERVER_RSS_MIB, WORKER_RSS_MIB = 250, 600


def _children(pid: int) -> list[int]:
    """Its child processes (workers are forked by the server's session threads)."""
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _status(address: str) -> dict:
    r = subprocess.run(GPUWIRE + ["status", "--server", address, "--json", "--no-tls", "--rounds", "1",
                                  "--bytes", "0"],
                       capture_output=True, text=True, timeout=60, env=gpuwire_env())
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["status"]  # the server's snapshot


def test_soak_mixed_clients(netns, tmp_path):  # noqa: F811 (the fixture)
    missing = [p for p in HONEST if not (PROGRAMS_DIR / p).exists()]
    if missing or not native_client_lib().exists():
        pytest.skip(f"not built: {missing or 'native parts'}")
    srv = _start_server(tmp_path, extra=("--client-stall-timeout", "4", "--max-preauth-per-peer", "8"))
    stop = threading.Event()
    failures: list[str] = []
    runs = [0]
    peaks = {"server": 0.0, "worker": 0.0}

    def honest(prog: str) -> None:
        while not stop.is_set():
            r = subprocess.run(GPUWIRE + ["run", "--server", srv.address, "--no-tls", "--",
                                          str(PROGRAMS_DIR / prog)],
                               capture_output=True, text=True, timeout=120, env=gpuwire_env())
            runs[0] += 1
            if r.returncode != 0:
                failures.append(f"{prog}: exit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
                return

    def stalled() -> None:
        s = Raw(srv, rcvbuf=64 << 10)
        try:
            _, dptr = s.setup(CHUNK)
            for _ in range(8):  # replies it never reads
                s.send(DTOH, struct.pack("<QQQ", dptr, CHUNK, 0))
            big = struct.pack("<QQ", dptr, 0) + bytes(BIG - 16)
            for _ in range(5):
                for tid in range(2, 18):
                    s.send(HTOD, big, tid=tid)
        except OSError:
            pass  # cut off by the stall timeout, as it should be
        finally:
            stalled_sid.append(s.sid)
            s.close()

    def flood() -> None:
        held: list[socket.socket] = []
        while not stop.is_set():
            held = [c for c in held if c.fileno() >= 0]
            while len(held) < 60:
                c = socket.socket()
                c.bind(("127.0.0.9", 0))
                c.settimeout(2)
                try:
                    c.connect((SERVER_IP, srv.port))
                except OSError:
                    c.close()
                    break
                held.append(c)
            time.sleep(0.2)
            for c in held[:20]:  # some go, others come
                c.close()
        for c in held:
            c.close()

    def sample() -> None:
        while not stop.is_set():
            peaks["server"] = max(peaks["server"], rss_mib(srv.proc.pid) or 0)
            for child in _children(srv.proc.pid):
                peaks["worker"] = max(peaks["worker"], rss_mib(child) or 0)
            time.sleep(0.05)

    stalled_sid: list[int] = []
    vanisher = subprocess.Popen([_ip_path(), "netns", "exec", netns, *GPUWIRE, "run", "--server", srv.address,
                                 "--no-tls", "--", sys.executable, "-c", HOLDER],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=gpuwire_env())
    threads = [threading.Thread(target=honest, args=(p,), daemon=True) for p in HONEST]
    threads += [threading.Thread(target=f, daemon=True) for f in (stalled, flood, sample)]
    try:
        line = vanisher.stdout.readline().strip()
        assert line == "ready", f"{line!r}: {vanisher.stderr.read() if vanisher.poll() is not None else ''}"
        vanish_sid = srv.session_of_pid(_holder_pid(srv))
        for t in threads:
            t.start()
        time.sleep(SECONDS / 3)
        _ip("-n", netns, "link", "set", NS_IF, "down")  # its machine vanishes mid-run
        time.sleep(SECONDS * 2 / 3)
        stop.set()
        for t in threads:
            t.join(120)
        assert not failures, "\n".join(failures)
        assert runs[0] >= len(HONEST), runs
        srv.wait_for_log(r"session end", session=vanish_sid, timeout=20)
        assert stalled_sid, "the stalled client never got a session"
        srv.wait_for_log(r"closing session: the client read nothing", session=stalled_sid[0], timeout=20)
        assert peaks["server"] < SERVER_RSS_MIB, peaks
        assert 0 < peaks["worker"] < WORKER_RSS_MIB, peaks
        assert "closing connections at once" in srv.log_text()
        deadline = time.monotonic() + 15
        while True:  # every lease freed, no session left
            snap = _status(srv.address)
            if not snap["leases"]["held"] and not snap["totals"]["sessions_active"]:
                break
            assert time.monotonic() < deadline, snap["leases"]
            time.sleep(0.5)
        assert srv.alive()
        print(f"soak: {runs[0]} honest runs, peaks {peaks}")
    finally:
        stop.set()
        vanisher.kill()
        vanisher.wait()
        srv.stop()


def _ip_path() -> str:
    import shutil
    return shutil.which("ip") or "ip"


def _holder_pid(srv) -> int:
    """The HELLO pid of the one session started so far (the vanishing client)."""
    import re
    m = srv.wait_for_log(r"session start\" session=\d+ .*\bpid=(\d+)\b")
    return int(m.group(1))
