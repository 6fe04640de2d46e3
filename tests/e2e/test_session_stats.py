"""The worker's per-session counters (shared memory the server reads; the
layout is declared in codegen/protocol.txt and generated for both sides): the
C struct is where session_stats.py reads, and live figures in the server's status while a real
client session runs against the stand-in."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest

from conftest import GPUWIRE, ROOT, gpuwire_env, gw_python_client
from gpuwire import session_stats

HOLDER = r"""
import ctypes, sys
cu = ctypes.CDLL("libcuda.so.1")
assert cu.cuInit(0) == 0
dev, ctx = ctypes.c_int(), ctypes.c_void_p()
assert cu.cuDeviceGet(ctypes.byref(dev), 0) == 0
assert cu.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) == 0
assert cu.cuCtxSetCurrent(ctx) == 0
for _ in range(300):
    assert cu.cuCtxSynchronize() == 0
print("ready", flush=True)
sys.stdin.read()
"""


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")
def test_reader_finds_each_field_where_the_worker_stores_it(tmp_path):
    """session_stats.Block.read takes field i at HEADER + 8 * i: gcc's layout
    of the generated struct must put it there."""
    lines = [f'    printf("%zu %zu\\n", offsetof(gw_session_stats, {f}), sizeof(((gw_session_stats *)0)->{f}));'
             for f in session_stats.FIELDS]
    src = tmp_path / "layout.c"
    src.write_text('#include <stdio.h>\n#include <stddef.h>\n'
                   f'#include "{ROOT / "native" / "generated" / "session_stats_layout.h"}"\n'
                   'int main(void) {\n    printf("%x %s\\n", GW_SSTATS_MAGIC, GW_SSTATS_ENV);\n'
                   + "\n".join(lines) + "\n    return 0;\n}\n")
    exe = tmp_path / "layout"
    subprocess.run(["gcc", "-std=gnu11", "-Wall", "-Werror", str(src), "-o", str(exe)], check=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == f"{session_stats.MAGIC:x} {session_stats.ENV}"
    assert [tuple(map(int, ln.split())) for ln in out[1:]] == [
        (session_stats.HEADER + 8 * i, 8) for i in range(len(session_stats.FIELDS))]


def test_rates():
    r = session_stats.Rates(window=5.0, step=0.2)
    assert r.update((0, 0), now=100.0) is None
    assert r.update((10, 100), now=101.0) == (10.0, 100.0)
    assert r.update((40, 100), now=102.0) == (20.0, 50.0)
    r.update((50, 100), now=108.0)
    assert r.update((60, 100), now=109.0)[0] < 20.0  # old samples dropped


def _status(server) -> dict:
    r = subprocess.run(GPUWIRE + ["status", "--json", "--server", server.address, "--bytes", "0", "--rounds", "1"],
                       capture_output=True, text=True, timeout=60, env=gpuwire_env())
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["status"]


def test_live_session_counters(server):
    proc = gw_python_client(server.address, HOLDER)
    try:
        deadline = time.monotonic() + 20
        while True:
            snap = _status(server)
            mine = [s for s in snap["sessions"] if s.get("pid") == proc.pid and "calls" in s]
            if mine and "calls_per_s" in mine[0]:
                break
            assert time.monotonic() < deadline, snap["sessions"]
            time.sleep(0.3)
        s = mine[0]
        assert s["calls"] >= 300 and s["round_trips"] >= 300
        assert s["call_bytes_in"] >= 300 * 16 and s["call_bytes_out"] >= 300 * 20
        assert s["busy_s"] is None  # nothing running: the client waits on stdin
        tot = snap["totals"]
        assert tot["calls"] >= s["calls"] and "calls_per_s" in tot and "bytes_in_per_s" in tot
    finally:
        proc.stdin.close()
        proc.wait(30)
    assert proc.returncode == 0, proc.stderr.read()


def test_block_and_busy():
    b = session_stats.create(1)
    if b is None:
        pytest.skip("no memfd here")
    try:
        assert b.read() is None  # the worker has not set it up
        import mmap
        import os
        import struct
        m = mmap.mmap(b.fd, session_stats.SIZE)  # what the worker does, from Python
        now = time.monotonic_ns()
        struct.pack_into("<II5Q", m, 0, session_stats.MAGIC, 8 + 8 * 5, 7, 3, 700, 300, now - 2_000_000_000)
        c = b.read()
        assert c["requests"] == 7 and c["replies"] == 3 and c["bytes_out"] == 300
        assert 1.5 < session_stats.busy_seconds(c) < 10
        struct.pack_into("<Q", m, 8 + 8 * 4, 0)
        assert session_stats.busy_seconds(b.read()) is None
        m.close()
        assert os.fstat(b.fd).st_size == session_stats.SIZE
    finally:
        b.close()
