"""The driver's tools module table, 6e163fbe, that cuFFT 13 asks for
(native/client/private/tools_module_table.c, docs/export-tables.md): slot 7
lists a module's functions through a callback and returns how many, as the
public cuModuleGetFunctionCount / cuModuleEnumerateFunctions do; the other
slots answer CUDA_ERROR_NOT_SUPPORTED and name themselves. Then cuFFT itself
(tests/programs/cufft_plan.c) where libcufft is found: GPUWIRE_TEST_CUFFT,
the nvidia-cufft wheel's libcufft.so.12, else the toolkit's: its plan is made
through gpuwire against the stand-in, which lists the kernel and globals of
each module cuFFT loads but cannot run them."""

import glob
import os
import site
import sys

import pytest

from conftest import ROOT, explain, gw_run

SCRIPT = r"""
import ctypes
cuda = ctypes.CDLL("libcuda.so.1")
assert cuda.cuInit(0) == 0
dev, ctx, mod = ctypes.c_int(), ctypes.c_void_p(), ctypes.c_void_p()
assert cuda.cuDeviceGet(ctypes.byref(dev), 0) == 0
assert cuda.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) == 0
assert cuda.cuCtxSetCurrent(ctx) == 0
# any image loads on the stand-in; one it cannot read holds all its kernels
assert cuda.cuModuleLoadData(ctypes.byref(mod), b".version 8.0\n.target sm_90\n.address_size 64\n\0") == 0

uuid = (ctypes.c_ubyte * 16)(*bytes.fromhex("6e163fbeb958444d835ce182aff1991e"))
t = ctypes.c_void_p()
assert cuda.cuGetExportTable(ctypes.byref(t), ctypes.byref(uuid)) == 0
words = (ctypes.c_void_p * 64).from_address(t.value)
print("size", words[0])

CB = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
seen = []
def record(user, fn, owner):
    seen.append((user, fn, owner))
cb = CB(record)
slot7 = ctypes.CFUNCTYPE(ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p, CB, ctypes.c_void_p)(words[7])

count = ctypes.c_uint()
assert cuda.cuModuleGetFunctionCount(ctypes.byref(count), mod) == 0
fns = (ctypes.c_void_p * count.value)()
assert cuda.cuModuleEnumerateFunctions(fns, count.value, mod) == 0
n = slot7(ctx, mod, cb, 0x1234)
print("slot7", n == count.value, count.value > 1, [f for _, f, _ in seen] == list(fns),
      all(u == 0x1234 and o == mod.value for u, _, o in seen))
seen.clear()
print("current", slot7(None, mod, cb, 0x1234) == count.value, len(seen) == count.value)
seen.clear()
print("bad", slot7(ctx, None, cb, 0), slot7(ctx, mod, CB(), 0), slot7(ctx, 0x4321, cb, 0), len(seen))
other = ctypes.CFUNCTYPE(ctypes.c_int)(words[33])
print("slot33", other())
"""


def test_slot7_lists_a_modules_functions(server):
    r = gw_run([sys.executable, "-c", SCRIPT], server=server.address, timeout=60)
    assert r.returncode == 0, explain(r, server)
    lines = r.stdout.split("\n")
    assert "size 512" in lines, explain(r, server)  # 64 words; cuFFT needs more than 0x37
    assert "slot7 True True True True" in lines, explain(r, server)
    assert "current True True" in lines, explain(r, server)
    assert "bad 0 0 0 0" in lines, explain(r, server)  # NULL module, NULL callback, unknown module
    assert "slot33 801" in lines, explain(r, server)  # CUDA_ERROR_NOT_SUPPORTED
    assert "TOOLS_MODULE slot 33 is not implemented" in r.stderr, explain(r, server)


def cufft_library() -> str | None:
    found = [os.environ.get("GPUWIRE_TEST_CUFFT", "")]
    for d in site.getsitepackages() + [site.getusersitepackages()]:
        found += glob.glob(d + "/nvidia/cu13/lib/libcufft.so.12") + glob.glob(d + "/nvidia/cufft/lib/libcufft.so.12")
    found += glob.glob("/usr/local/cuda/lib64/libcufft.so.12")
    return next((f for f in found if f and os.path.exists(f)), None)


def test_cufft_through_the_table(server):
    lib = cufft_library()
    program = ROOT / "build" / "programs-libs" / "cufft_plan"
    if lib is None:
        pytest.skip("no libcufft.so.12 (GPUWIRE_TEST_CUFFT, the nvidia-cufft wheel or the toolkit)")
    if not program.exists():
        pytest.skip("build/programs-libs/cufft_plan is not built (make -C tests/programs)")
    r = gw_run([str(program), lib], server=server.address, env={"GPUWIRE_DEBUG": "2"}, timeout=120)
    assert r.returncode == 0, explain(r, server)
    lines = r.stdout.split("\n")
    assert "cufftCreate 0" in lines, explain(r, server)
    # the plan: cuFFT loads one kernel per module and takes it through slot 7, which must
    # answer 1 (the stand-in lists a cuFFT module's real kernels, tests/standin/foreign.c)
    assert "cufftPlan1d 0" in lines, explain(r, server)
    assert "gpuwire: export table TOOLS_MODULE -> " in r.stderr, explain(r, server)
    answers = [ln for ln in r.stderr.splitlines() if "export TOOLS_MODULE[7] -> " in ln]
    assert answers and all("-> 1 function(s)," in ln for ln in answers), explain(r, server)
    # slot 7 is all cuFFT uses of the table
    assert "TOOLS_MODULE slot" not in r.stderr, explain(r, server)
    # the transform itself is launched, but the stand-in cannot run cuFFT's kernels: the
    # launch's error (CUDA_ERROR_NOT_SUPPORTED) surfaces at the synchronization
    assert "cufftExecC2C 0" in lines and "cuCtxSynchronize 801" in lines, explain(r, server)
    assert "cufftDestroy 0" in lines, explain(r, server)
