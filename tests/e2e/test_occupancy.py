"""Issue 14: cuOccupancyMaxPotentialBlockSize(WithFlags), whose
blockSizeToDynamicSMemSize callback is a function in the application's process
(native/client/api/occupancy.c calls it for every block size the driver may
try and sends the table; native/worker/handlers/occupancy.c answers the
driver's questions from it). tests/programs/occupancy must print through
gpuwire exactly what it prints linked straight to the stand-in driver (the GPU
run compares it with the real driver the same way), and the worker refuses a
malformed table."""

import json
import os
import struct
import subprocess

import pytest

from conftest import NOT_BUILT, PROGRAMS_DIR, explain, gw_run
from gpuwire import paths
from test_cache_wire import frame, op_id
from test_server import assert_malformed_ends_session

PROGRAM = PROGRAMS_DIR / "occupancy"


def direct(tmp_path):
    """The program linked straight to the stand-in driver, no gpuwire between."""
    lib = tmp_path / "direct"
    lib.mkdir(exist_ok=True)
    link = lib / "libcuda.so.1"
    if not link.exists():
        link.symlink_to(paths.NATIVE_DIR / "libgpuwire_standin.so")
    env = dict(os.environ, LD_LIBRARY_PATH=str(lib))
    return subprocess.run([str(PROGRAM)], capture_output=True, text=True, timeout=60, env=env)


def test_occupancy_matches_the_driver(server, tmp_path):
    if not PROGRAM.is_file():
        pytest.skip(NOT_BUILT)
    native = direct(tmp_path)
    assert native.returncode == 0, native.stdout + native.stderr
    assert native.stdout.strip().splitlines()[-1] == "PASS occupancy", native.stdout
    stats_path = tmp_path / "stats.json"
    result = gw_run([str(PROGRAM)], server=server.address, stats=stats_path, timeout=120)
    assert result.returncode == 0, explain(result, server)
    assert result.stdout.splitlines() == native.stdout.splitlines(), explain(result, server)
    # cuKernelGetFunction answers the same handle every time, so the occupancy
    # query of the 20-times loop is asked of the server once (HF generate: one
    # round trip a token before)
    rts = json.loads(stats_path.read_text())["round_trips_by_function"]
    assert rts.get("cuOccupancyMaxActiveBlocksPerMultiprocessorWithFlags", 0) == 1, rts
    assert rts.get("cuKernelGetFunction", 0) <= 1, rts
    # the same cluster occupancy question 20 times: asked of the server once
    # (cuBLASLt's around its GEMMs: llama.cpp's prompt processing, issue 20)
    assert "result 0, 1056 clusters" in result.stdout, result.stdout
    assert rts.get("cuOccupancyMaxActiveClusters", 0) == 1, rts
    assert "not supported by gpuwire" not in result.stderr, explain(result, server)
    # every block size the stand-in's search asked about was in the client's table
    assert "which the client did not compute" not in server.log_text()


def request(n=0, entries=(), flags=0, outs=3, limit=0, smem=0, fid=0x10008) -> bytes:
    """u64 function, u64 dynamicSMemSize, u32 limit, u32 flags, u32 outputs, u32 n, n x (u32 block, u64 bytes)."""
    body = struct.pack("<QQIIII", fid, smem, limit & 0xFFFFFFFF, flags, outs, n)
    return body + b"".join(struct.pack("<IQ", b, s) for b, s in entries)


WARPS = [(32 * i, 8 * 32 * i) for i in range(1, 33)]
PLAIN, WITH_FLAGS = "cuOccupancyMaxPotentialBlockSize", "cuOccupancyMaxPotentialBlockSizeWithFlags"
HOSTILE = [
    ("65 entries", WITH_FLAGS, request(65, [(i + 1, 0) for i in range(65)]), "a table of 65 block sizes"),
    ("2^32-1 entries", PLAIN, request(0xFFFFFFFF), "a table of 4294967295 block sizes"),
    ("block size 0", PLAIN, request(2, [(0, 0), (32, 0)]), "block size 0 in the table"),
    ("block size 5000", WITH_FLAGS, request(2, [(32, 0), (5000, 0)]), "block size 5000 in the table"),
    ("descending", PLAIN, request(2, [(64, 0), (32, 0)]), "block size 32 in the table"),
    ("repeated", PLAIN, request(2, [(64, 0), (64, 0)]), "block size 64 in the table"),
    ("table cut short", WITH_FLAGS, request(32, WARPS)[:-6], "truncated"),
    ("flags without flags", PLAIN, request(flags=1), "flags 0x1 on the call without flags"),
    ("unknown outputs", WITH_FLAGS, request(outs=4), "outputs 0x4"),
    ("trailing bytes", PLAIN, request(1, [(32, 0)]) + b"\0\0\0\0", "trailing bytes"),
    ("header cut short", PLAIN, request()[:20], "truncated"),
]


@pytest.mark.parametrize("what,op,payload,reason", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_occupancy_requests_end_the_session(server, what, op, payload, reason):
    """The worker bounds the table (count, block sizes, their order) and the
    flags and output bits before its driver sees any of it."""
    assert_malformed_ends_session(server, frame(op_id(op), payload), reason)
