"""The memo of answers that never change (native/client/wire/reply_memo.c;
which calls are memoised: `@cached` in codegen/annotations.txt) saves round
trips: asking the same constant questions many times costs what asking once
does. Without this test the memo could stop working with every other test
green (issue 20)."""

import json
import sys

from conftest import explain, gw_run

SCRIPT = r"""
import ctypes, sys
cuda = ctypes.CDLL("libcuda.so.1")
n = int(sys.argv[1])
assert cuda.cuInit(0) == 0
dev, ctx, stream = ctypes.c_int(), ctypes.c_void_p(), ctypes.c_void_p()
assert cuda.cuDeviceGet(ctypes.byref(dev), 0) == 0
assert cuda.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) == 0
assert cuda.cuCtxSetCurrent(ctx) == 0
assert cuda.cuStreamCreateWithPriority(ctypes.byref(stream), 1, -1) == 0
lo, hi, prio, flags, ver = ctypes.c_int(), ctypes.c_int(), ctypes.c_int(), ctypes.c_uint(), ctypes.c_uint()
sid, cid = ctypes.c_ulonglong(), ctypes.c_ulonglong()
for _ in range(n):  # what libraries ask around every launch or stream use
    assert cuda.cuCtxGetStreamPriorityRange(ctypes.byref(lo), ctypes.byref(hi)) == 0
    assert cuda.cuStreamGetPriority(stream, ctypes.byref(prio)) == 0
    assert cuda.cuStreamGetFlags(stream, ctypes.byref(flags)) == 0 and flags.value == 1, flags.value
    assert cuda.cuStreamGetId(stream, ctypes.byref(sid)) == 0
    assert cuda.cuCtxGetApiVersion(ctx, ctypes.byref(ver)) == 0
    assert cuda.cuCtxGetId(ctx, ctypes.byref(cid)) == 0
assert cuda.cuStreamDestroy_v2(stream) == 0
assert cuda.cuCtxSynchronize() == 0
print("ok", prio.value, lo.value, hi.value)
"""


def round_trips(server, tmp_path, n):
    stats = tmp_path / f"m{n}.json"
    r = gw_run([sys.executable, "-c", SCRIPT, str(n)], server=server.address, stats=stats)
    assert r.returncode == 0 and r.stdout.startswith("ok"), explain(r, server)
    return json.loads(stats.read_text())["round_trips"], r.stdout


def test_constant_answers_are_asked_once(server, tmp_path):
    once, out1 = round_trips(server, tmp_path, 1)
    many, out200 = round_trips(server, tmp_path, 200)
    assert out1 == out200
    assert many == once, f"200 rounds of constant queries cost {many} round trips, one round {once}"
