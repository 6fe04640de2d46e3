"""Issue 3: start-up patterns like PyTorch's (many module loads, many function
lookups) make no round trip per lookup: a module's functions reach the client
once, after its load; a missing name is still refused at once."""

import json
import sys

import pytest

from conftest import ROOT, explain, gw_run

FATBIN = ROOT / "build" / "programs" / "obj" / "driver_api_kernels.fatbin"

SCRIPT = r"""
import ctypes, sys
cuda = ctypes.CDLL("libcuda.so.1")
image = open(sys.argv[1], "rb").read()
modules, lookups = int(sys.argv[2]), int(sys.argv[3])
assert cuda.cuInit(0) == 0
dev, ctx = ctypes.c_int(), ctypes.c_void_p()
assert cuda.cuDeviceGet(ctypes.byref(dev), 0) == 0
assert cuda.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) == 0
assert cuda.cuCtxSetCurrent(ctx) == 0
for m in range(modules):
    mod = ctypes.c_void_p()
    assert cuda.cuModuleLoadData(ctypes.byref(mod), image) == 0
    for k in range(lookups):
        fn = ctypes.c_void_p()
        name = b"da_scale" if k % 2 else b"da_mix"
        assert cuda.cuModuleGetFunction(ctypes.byref(fn), mod, name) == 0, (m, k)
    fn = ctypes.c_void_p()
    rc = cuda.cuModuleGetFunction(ctypes.byref(fn), mod, b"no_such_kernel")
    assert rc == 500, rc  # CUDA_ERROR_NOT_FOUND, at once
assert cuda.cuCtxSynchronize() == 0
print("ok")
"""


def rounds(server, tmp_path, modules, lookups):
    if not FATBIN.exists():
        pytest.skip("build/programs/obj/driver_api_kernels.fatbin is not built (run scripts/setup)")
    stats = tmp_path / f"s{modules}_{lookups}.json"
    r = gw_run([sys.executable, "-c", SCRIPT, str(FATBIN), str(modules), str(lookups)], server=server.address,
               stats=stats)
    assert r.returncode == 0 and r.stdout.strip() == "ok", explain(r, server)
    return json.loads(stats.read_text())["round_trips"]


def test_lookups_cost_no_round_trips(server, tmp_path):
    few = rounds(server, tmp_path, 10, 2)
    many = rounds(server, tmp_path, 10, 100)
    assert many == few, (few, many)  # 980 more lookups, not one more round trip


def test_modules_cost_at_most_one_round_trip_each(server, tmp_path):
    ten = rounds(server, tmp_path, 10, 10)
    twenty = rounds(server, tmp_path, 20, 10)
    assert twenty - ten <= 10, (ten, twenty)
