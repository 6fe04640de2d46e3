"""JIT linking through gpuwire (cuLinkCreate/AddData/AddFile/Complete/Destroy):
numeric JIT options travel, log buffers are the worker's and their text is
copied into the application's buffers (more in test_jit_logs.py), options
whose value is a pointer the driver would read are refused,
cuLinkAddFile reads the file on the client, and the cubin cuLinkComplete
returns loads with cuModuleLoadData. The stand-in "links" by returning the
first input (a test double)."""

import sys

import pytest

from conftest import ROOT, explain, gw_run

FATBIN = ROOT / "build" / "programs" / "obj" / "driver_api_kernels.fatbin"

SCRIPT = r"""
import ctypes, sys
cuda = ctypes.CDLL("libcuda.so.1")
path = sys.argv[1]
image = open(path, "rb").read()
CUBIN, PTX, FATBINARY = 0, 1, 2
INFO_BUF, INFO_SIZE, ERR_BUF, ERR_SIZE, OPT_LEVEL, SYMBOL_NAMES = 3, 4, 5, 6, 7, 17
INVALID_VALUE, INVALID_IMAGE, FILE_NOT_FOUND, INVALID_HANDLE = 1, 200, 301, 400
assert cuda.cuInit(0) == 0
dev, ctx = ctypes.c_int(), ctypes.c_void_p()
assert cuda.cuDeviceGet(ctypes.byref(dev), 0) == 0
assert cuda.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) == 0
assert cuda.cuCtxSetCurrent(ctx) == 0

info, err = ctypes.create_string_buffer(256), ctypes.create_string_buffer(64)
opts = (ctypes.c_int * 5)(INFO_BUF, INFO_SIZE, ERR_BUF, ERR_SIZE, OPT_LEVEL)
vals = (ctypes.c_void_p * 5)(ctypes.addressof(info), 256, ctypes.addressof(err), 64, 3)
link = ctypes.c_void_p()
assert cuda.cuLinkCreate_v2(5, opts, vals, ctypes.byref(link)) == 0 and link.value

# a refused input: its error text reaches the application's buffer (cut to its size)
junk = b"not an image at all"
assert cuda.cuLinkAddData_v2(link, CUBIN, junk, len(junk), b"junk.cubin", 0, None, None) == INVALID_IMAGE
assert err.value.startswith(b"stand-in linker: junk.cubin is not"), err.value
assert len(err.value) == 63, len(err.value)
# per-input options: numbers travel, pointers do not
o1, v1 = (ctypes.c_int * 1)(OPT_LEVEL), (ctypes.c_void_p * 1)(2)
assert cuda.cuLinkAddData_v2(link, FATBINARY, image, len(image), b"first", 1, o1, v1) == 0
o2, v2 = (ctypes.c_int * 1)(SYMBOL_NAMES), (ctypes.c_void_p * 1)(ctypes.addressof(info))
assert cuda.cuLinkAddData_v2(link, FATBINARY, image, len(image), b"second", 1, o2, v2) == INVALID_VALUE
assert cuda.cuLinkAddFile_v2(link, FATBINARY, path.encode(), 0, None, None) == 0
assert cuda.cuLinkAddFile_v2(link, FATBINARY, b"/nonexistent/x.fatbin", 0, None, None) == FILE_NOT_FOUND
cubin, size = ctypes.c_void_p(), ctypes.c_size_t()
assert cuda.cuLinkComplete(link, ctypes.byref(cubin), ctypes.byref(size)) == 0
assert size.value == len(image) and ctypes.string_at(cubin, size.value) == image
text = info.value.decode()
assert "added first (%d bytes)" % len(image) in text and "added %s" % path in text, text
assert "linked 2 inputs" in text, text
assert vals[1] == len(info.value) + 1, (vals[1], len(info.value))  # bytes filled, as the driver reports

mod, fn = ctypes.c_void_p(), ctypes.c_void_p()
assert cuda.cuModuleLoadData(ctypes.byref(mod), cubin) == 0
assert cuda.cuModuleGetFunction(ctypes.byref(fn), mod, b"da_scale") == 0 and fn.value
assert cuda.cuModuleUnload(mod) == 0
assert cuda.cuLinkDestroy(link) == 0
assert cuda.cuLinkDestroy(link) == INVALID_HANDLE

# the old names; an option whose value is a pointer to read is refused before anything travels
old = ctypes.c_void_p()
assert cuda.cuLinkCreate(0, None, None, ctypes.byref(old)) == 0
assert cuda.cuLinkAddData(old, FATBINARY, image, len(image), None, 0, None, None) == 0
assert cuda.cuLinkAddFile(old, FATBINARY, path.encode(), 0, None, None) == 0
assert cuda.cuLinkComplete(old, ctypes.byref(cubin), None) == 0
assert ctypes.string_at(cubin, len(image)) == image
assert cuda.cuLinkDestroy(old) == 0
wopts, wvals = (ctypes.c_int * 1)(SYMBOL_NAMES), (ctypes.c_void_p * 1)(ctypes.addressof(info))
assert cuda.cuLinkCreate_v2(1, wopts, wvals, ctypes.byref(old)) == INVALID_VALUE
assert cuda.cuLinkComplete(ctypes.c_void_p(0x12340), ctypes.byref(cubin), None) == INVALID_HANDLE
print("ok")
"""


def test_link_round_trip(server, tmp_path):
    if not FATBIN.exists():
        pytest.skip("build/programs/obj/driver_api_kernels.fatbin is not built (run scripts/setup)")
    copy = tmp_path / "input.fatbin"
    copy.write_bytes(FATBIN.read_bytes())
    r = gw_run([sys.executable, "-c", SCRIPT, str(copy)], server=server.address)
    assert r.returncode == 0 and r.stdout.strip() == "ok", explain(r, server)
    assert "JIT option 17 is not forwarded" in r.stderr, r.stderr
