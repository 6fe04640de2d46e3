"""Twenty clients at once against one stand-in server, with mixed leases.

A holder takes an exclusive lease and keeps it; four exclusive clients queue
behind it one after another, then twelve shared ones (which queue behind the
waiting exclusive requests), and three --no-wait clients are refused at once.
When the holder lets go, the queue drains in order: the four exclusive
clients one at a time, in the order they came, then the twelve shared ones
together. Every client but the holder runs a real test program
(build/programs) through `gpuwire run`; the lease comes from GPUWIRE_LEASE
and GPUWIRE_NO_WAIT, which the C client sends in its HELLO."""

from __future__ import annotations

import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import NOT_BUILT, built_programs, explain, gw_run, start_server

HOLDER = r"""
import ctypes, os, sys, time
cu = ctypes.CDLL("libcuda.so.1")
u64 = ctypes.c_uint64
cu.cuMemAlloc_v2.argtypes = [ctypes.POINTER(u64), ctypes.c_size_t]
cu.cuMemcpyHtoD_v2.argtypes = [u64, ctypes.c_void_p, ctypes.c_size_t]
cu.cuMemcpyDtoH_v2.argtypes = [ctypes.c_void_p, u64, ctypes.c_size_t]
ctx = ctypes.c_void_p()
assert cu.cuInit(0) == 0
assert cu.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), 0) == 0 and cu.cuCtxSetCurrent(ctx) == 0
p = u64()
assert cu.cuMemAlloc_v2(ctypes.byref(p), 1 << 20) == 0
src = ctypes.create_string_buffer(bytes(range(256)) * 4096)
dst = ctypes.create_string_buffer(1 << 20)
assert cu.cuMemcpyHtoD_v2(p, src, 1 << 20) == 0
print("holding", flush=True)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.02)
assert cu.cuMemcpyDtoH_v2(dst, p, 1 << 20) == 0 and dst.raw == src.raw[:1 << 20]
print("PASS holder")
"""

N_EXCLUSIVE, N_SHARED, N_NO_WAIT = 4, 12, 3  # + the holder: 20 clients
NO_WAIT_REFUSAL = "not queueing because of --no-wait"


def _programs() -> list[Path]:
    progs = built_programs()
    if not progs:
        pytest.skip(NOT_BUILT)
    return progs


def _count(srv, pattern: str) -> list[re.Match]:
    rx = re.compile(pattern)
    return [m for m in map(rx.search, srv.log_lines()) if m]


def _wait_count(srv, pattern: str, n: int, timeout: float = 60.0) -> list[re.Match]:
    deadline = time.monotonic() + timeout
    while True:
        found = _count(srv, pattern)
        if len(found) >= n:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"expected {n} server log lines matching {pattern!r} within {timeout} s, got "
                        f"{len(found)}; log tail:\n" + "\n".join(srv.log_lines()[-40:]))
        time.sleep(0.05)


def _passed(result) -> bool:
    lines = result.stdout.strip().splitlines()
    return result.returncode == 0 and bool(lines) and lines[-1].startswith("PASS")


def test_twenty_clients_with_mixed_leases(tmp_path):
    progs = _programs()
    srv = start_server(tmp_path / "server.log", extra_args=("--queue-interval", "1"))
    release = tmp_path / "release"
    holder_script = tmp_path / "holder.py"
    holder_script.write_text(HOLDER)
    excl = {"GPUWIRE_LEASE": "exclusive"}
    waiting_excl = r"waiting for an exclusive lease[^\"]*\" session=(\d+)"
    waiting_shared = r"waiting for a shared lease[^\"]*\" session=(\d+)"
    try:
        with ThreadPoolExecutor(max_workers=20) as pool:
            holder = pool.submit(gw_run, [sys.executable, str(holder_script), str(release)], srv.address,
                                 timeout=180, env=excl)
            srv.wait_for_log(r"session start.* lease=exclusive ", timeout=60)
            # exclusive clients, one at a time so their place in the queue is known
            exclusive = []
            for i in range(N_EXCLUSIVE):
                prog = progs[i % len(progs)]
                exclusive.append((prog, pool.submit(gw_run, [str(prog)], srv.address, timeout=180, env=excl)))
                _wait_count(srv, waiting_excl, i + 1)
            queue_order = [int(m.group(1)) for m in _count(srv, waiting_excl)]
            shared = []
            for i in range(N_SHARED):
                prog = progs[(N_EXCLUSIVE + i) % len(progs)]
                shared.append((prog, pool.submit(gw_run, [str(prog)], srv.address, timeout=180)))
            _wait_count(srv, waiting_shared, N_SHARED)
            # refused at once: an exclusive lease is held and others wait
            no_wait = []
            for i, lease in enumerate(["exclusive", "exclusive", "shared"]):
                prog = progs[i % len(progs)]
                env = {"GPUWIRE_LEASE": lease, "GPUWIRE_NO_WAIT": "1"}
                no_wait.append((prog, lease, pool.submit(gw_run, [str(prog)], srv.address, timeout=60, env=env)))
            for prog, lease, fut in no_wait:
                r = fut.result()
                assert r.returncode != 0 and NO_WAIT_REFUSAL in r.stderr, (
                    f"{prog.name} ({lease}, GPUWIRE_NO_WAIT=1) was not refused:\n" + explain(r, srv))
            assert not holder.done(), "the holder ended before it was told to:\n" + explain(holder.result(), srv)
            release.touch()
            results = [("holder", holder.result())] + [(p.name, f.result()) for p, f in exclusive + shared]
        for name, r in results:
            assert _passed(r), f"{name} failed:\n" + explain(r, srv)
        _wait_count(srv, r"session end", 1 + N_EXCLUSIVE + N_SHARED, timeout=30)
    finally:
        srv.stop()

    lines = srv.log_lines()
    starts = {int(m.group(1)): m.group(2) for m in _count(srv, r"session start\" session=(\d+) .*lease=(exclusive|shared) ")}
    ends = {int(m.group(1)) for m in _count(srv, r"session end\" session=(\d+) .*status=\"exit status 0\"")}
    assert len(starts) == 1 + N_EXCLUSIVE + N_SHARED, "\n".join(lines)
    assert sorted(starts.values()).count("exclusive") == 1 + N_EXCLUSIVE
    assert set(starts) <= ends, f"sessions without a clean end: {sorted(set(starts) - ends)}\n" + "\n".join(lines)
    refused = _count(srv, r"lease refused without waiting")
    assert len(refused) == N_NO_WAIT, "\n".join(lines)

    # FIFO: leases were granted in queue order, the exclusive ones before the shared ones queued after them
    granted = [int(m.group(1)) for m in _count(srv, r"lease granted\" session=(\d+)")]
    holder_sid = granted[0]
    assert granted[1:1 + N_EXCLUSIVE] == queue_order, (
        f"exclusive leases granted in order {granted[1:1 + N_EXCLUSIVE]}, queued as {queue_order}\n" + "\n".join(lines))
    assert starts[holder_sid] == "exclusive"
    assert {starts[s] for s in granted[1 + N_EXCLUSIVE:]} == {"shared"}

    # an exclusive session never overlaps another leased session
    active: set[int] = set()
    rx = re.compile(r"(session start|session end)\" session=(\d+)")
    for line in lines:
        m = rx.search(line)
        if not m or int(m.group(2)) not in starts:
            continue
        sid = int(m.group(2))
        if m.group(1) == "session start":
            alone = not active
            assert alone or all(starts[s] == "shared" for s in active) and starts[sid] == "shared", (
                f"session {sid} ({starts[sid]}) started while {sorted(active)} were active:\n" + "\n".join(lines))
            active.add(sid)
        else:
            active.discard(sid)


def test_no_wait_is_granted_when_nothing_is_held(server):
    """GPUWIRE_NO_WAIT only refuses when the lease cannot be had now."""
    progs = _programs()
    r = gw_run([str(progs[0])], server.address, timeout=120, env={"GPUWIRE_LEASE": "exclusive", "GPUWIRE_NO_WAIT": "1"})
    assert _passed(r), explain(r, server)
