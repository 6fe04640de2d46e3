"""Issue 3: function attributes answered in the client (native/client/state/func_attrs.c).

tests/programs/kernel_attrs loads a bare cubin as a library and reads, sets and
rereads its kernels' attributes. Through gpuwire it must print exactly what it
prints linked straight to the stand-in driver (the GPU run compares it with the
real driver the same way), and cuDNN's per-token pattern (load a fresh cubin, set
its kernel's dynamic shared size and cluster flag, read them back, synchronize,
read every kernel's attributes) must cost one round trip per round, its
synchronize: the kernels and their layouts are read from the cubin, attribute
values come with the load, sets the client can judge are applied to what it
keeps, and a set on one kernel leaves every other kernel's values alone."""

import json
import os
import subprocess

import pytest

from conftest import ROOT, explain, gw_run
from gpuwire import paths

PROGRAM = ROOT / "build" / "programs" / "kernel_attrs"
ATTRIBUTE_OPS = ("cuKernelGetAttribute", "cuFuncGetAttribute")


def direct(tmp_path, *args):
    """The program linked straight to the stand-in driver, no gpuwire between."""
    lib = tmp_path / "direct"
    lib.mkdir(exist_ok=True)
    link = lib / "libcuda.so.1"
    if not link.exists():
        link.symlink_to(paths.NATIVE_DIR / "libgpuwire_standin.so")
    env = dict(os.environ, LD_LIBRARY_PATH=str(lib))
    return subprocess.run([str(PROGRAM), *args], capture_output=True, text=True, timeout=60, env=env)


def through_gpuwire(server, tmp_path, *args):
    stats = tmp_path / "stats.json"
    result = gw_run([str(PROGRAM), *args], server=server.address, stats=stats, timeout=120)
    assert result.returncode == 0, explain(result, server)
    return result, json.loads(stats.read_text())


@pytest.fixture(autouse=True)
def need_program():
    if not PROGRAM.exists():
        pytest.skip("build/programs/kernel_attrs is not built (make -C tests/programs)")


def test_attribute_reads_and_sets_match_the_driver(server, tmp_path):
    native = direct(tmp_path)
    assert native.returncode == 0, native.stdout + native.stderr
    result, _ = through_gpuwire(server, tmp_path)
    assert result.stdout.splitlines() == native.stdout.splitlines(), explain(result, server)
    assert result.stdout.strip().splitlines()[-1] == "PASS kernel_attrs"


def test_cudnn_pattern_costs_one_round_trip_per_token(server, tmp_path):
    native = direct(tmp_path, "cudnn")
    assert native.returncode == 0, native.stdout + native.stderr
    result, stats = through_gpuwire(server, tmp_path, "cudnn")
    assert result.stdout.splitlines() == native.stdout.splitlines(), explain(result, server)
    # four rounds: each reads its new kernel's two set attributes, then every
    # attribute of every kernel so far, (1+2+3+4) x 16
    assert stats["by_function"].get("cuKernelGetAttribute", 0) == 4 * 2 + 10 * 16, stats["by_function"]
    # the kernels were read from the cubins, checked against the worker's lists, alike
    assert stats["image_info"] == {"read": 4, "checked": 4, "differing": 0}, stats["image_info"]
    waits = stats["round_trips_by_function"]
    assert waits.get("cuCtxSynchronize", 0) == 4, waits
    for op in ATTRIBUTE_OPS + ("cuLibraryGetKernel", "cuKernelGetFunction", "cuLibraryLoadData"):
        assert waits.get(op, 0) == 0, (op, waits)


def test_lookups_wait_for_the_driver_without_the_cubin_reading(server, tmp_path):
    # GPUWIRE_CUBIN_INFO=0: each library's first lookup waits for its load, as before
    stats_path = tmp_path / "stats.json"
    result = gw_run([str(PROGRAM), "cudnn"], server=server.address, stats=stats_path, timeout=120,
                    env={"GPUWIRE_CUBIN_INFO": "0"})
    assert result.returncode == 0, explain(result, server)
    stats = json.loads(stats_path.read_text())
    assert stats["image_info"]["read"] == 0
    assert stats["round_trips_by_function"].get("cuLibraryGetKernel", 0) == 4, stats["round_trips_by_function"]


TAMPER = r"""
import ctypes, sys
cuda = ctypes.CDLL("libcuda.so.1")
image = ctypes.create_string_buffer(open(sys.argv[1], "rb").read())
assert cuda.cuInit(0) == 0
dev, ctx = ctypes.c_int(), ctypes.c_void_p()
assert cuda.cuDeviceGet(ctypes.byref(dev), 0) == 0
assert cuda.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) == 0
assert cuda.cuCtxSetCurrent(ctx) == 0
lib, kern = ctypes.c_void_p(), ctypes.c_void_p()
assert cuda.cuLibraryLoadData(ctypes.byref(lib), image, None, None, 0, None, None, 0) == 0
assert cuda.cuLibraryGetKernel(ctypes.byref(kern), lib, b"da_mix") == 0
assert cuda.cuCtxSynchronize() == 0
print("ok")
"""


def test_a_cubin_read_that_differs_from_the_driver_is_caught(server, tmp_path):
    import re
    import sys

    cubin = ROOT / "build" / "programs" / "obj" / "kernel_attrs.cubin"
    data = bytearray(cubin.read_bytes())
    # da_mix's second parameter (ordinal 1: a char at offset 4) moved to offset 5:
    # still a well-formed table, so the client's reading accepts it; the
    # stand-in, like a driver, knows the kernel's real layout
    records = [m.start() for m in re.finditer(re.escape(b"\x04\x17\x0c\x00"), bytes(data))
               if data[m.start() + 8:m.start() + 12] == b"\x01\x00\x04\x00"]
    assert len(records) == 1, records
    data[records[0] + 10] = 5
    tampered = tmp_path / "tampered.cubin"
    tampered.write_bytes(bytes(data))
    script = tmp_path / "tamper.py"
    script.write_text(TAMPER)
    stats_path = tmp_path / "stats.json"
    result = gw_run([sys.executable, str(script), str(tampered)], server=server.address, stats=stats_path,
                    timeout=120)
    assert result.returncode == 0 and "ok" in result.stdout, explain(result, server)
    stats = json.loads(stats_path.read_text())
    assert stats["image_info"] == {"read": 1, "checked": 1, "differing": 1}, stats["image_info"]
    assert "a parameter layout read from a cubin differs from the driver's" in result.stderr, result.stderr
