"""Issue 3: queries libraries make before every launch cost no round trip once
answered: a function attribute set again to the value it has keeps the kept
attribute answers, context limits are kept per context, and a real change
(a new attribute value, cuCtxSetLimit) is seen at once."""

import json
import sys

import pytest

from conftest import ROOT, explain, gw_run

FATBIN = ROOT / "build" / "programs" / "obj" / "driver_api_kernels.fatbin"

SCRIPT = r"""
import ctypes, sys
cuda = ctypes.CDLL("libcuda.so.1")
image = open(sys.argv[1], "rb").read()
n = int(sys.argv[2])
MAX_DYN_SMEM = 8          # CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES
PRINTF_FIFO, HEAP = 1, 2  # CU_LIMIT_PRINTF_FIFO_SIZE, CU_LIMIT_MALLOC_HEAP_SIZE
assert cuda.cuInit(0) == 0
dev, ctx, mod, fn = ctypes.c_int(), ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_void_p()
assert cuda.cuDeviceGet(ctypes.byref(dev), 0) == 0
assert cuda.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) == 0
assert cuda.cuCtxSetCurrent(ctx) == 0
assert cuda.cuModuleLoadData(ctypes.byref(mod), image) == 0
assert cuda.cuModuleGetFunction(ctypes.byref(fn), mod, b"da_scale") == 0
v, lim = ctypes.c_int(), ctypes.c_size_t()
for i in range(n):  # the pattern of cuBLAS and PyTorch before each launch
    assert cuda.cuFuncSetAttribute(fn, MAX_DYN_SMEM, 2048) == 0
    assert cuda.cuFuncGetAttribute(ctypes.byref(v), MAX_DYN_SMEM, fn) == 0 and v.value == 2048, v.value
    assert cuda.cuCtxGetLimit(ctypes.byref(lim), PRINTF_FIFO) == 0
# a new value is seen at once, by attribute and by limit
assert cuda.cuFuncSetAttribute(fn, MAX_DYN_SMEM, 4096) == 0
assert cuda.cuFuncGetAttribute(ctypes.byref(v), MAX_DYN_SMEM, fn) == 0 and v.value == 4096, v.value
assert cuda.cuCtxSetLimit(HEAP, 12345678) == 0
assert cuda.cuCtxGetLimit(ctypes.byref(lim), HEAP) == 0 and lim.value == 12345678, lim.value
assert cuda.cuCtxSetLimit(HEAP, 23456789) == 0
assert cuda.cuCtxGetLimit(ctypes.byref(lim), HEAP) == 0 and lim.value == 23456789, lim.value
# a reset context gives its functions back their defaults: nothing kept survives it
assert cuda.cuDevicePrimaryCtxReset_v2(dev) == 0
assert cuda.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) == 0
assert cuda.cuCtxSetCurrent(ctx) == 0
assert cuda.cuModuleLoadData(ctypes.byref(mod), image) == 0
assert cuda.cuModuleGetFunction(ctypes.byref(fn), mod, b"da_scale") == 0
assert cuda.cuFuncGetAttribute(ctypes.byref(v), MAX_DYN_SMEM, fn) == 0 and v.value != 4096, v.value
assert cuda.cuCtxGetLimit(ctypes.byref(lim), HEAP) == 0 and lim.value != 23456789, lim.value
assert cuda.cuCtxSynchronize() == 0
print("ok")
"""


def round_trips(server, tmp_path, n):
    if not FATBIN.exists():
        pytest.skip("build/programs/obj/driver_api_kernels.fatbin is not built (run scripts/setup)")
    stats = tmp_path / f"s{n}.json"
    r = gw_run([sys.executable, "-c", SCRIPT, str(FATBIN), str(n)], server=server.address, stats=stats)
    assert r.returncode == 0 and r.stdout.strip() == "ok", explain(r, server)
    return json.loads(stats.read_text())["round_trips"]


def test_repeated_sets_and_queries_cost_no_round_trips(server, tmp_path):
    few = round_trips(server, tmp_path, 2)
    many = round_trips(server, tmp_path, 200)
    assert many == few, (few, many)  # 198 more set/get/limit rounds, not one more round trip
