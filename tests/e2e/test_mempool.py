"""Memory pools and im2col tensor maps through gpuwire, against the stand-in:
cuMemGetDefaultMemPool / cuMemGetMemPool / cuMemSetMemPool, pool attributes
(int-valued reuse flags, cuuint64_t thresholds and figures), pool access, and
cuTensorMapEncodeIm2col / ...Wide (host-side encodings; the stand-in writes a
layout of its own so every input can be seen to arrive)."""

import sys

from conftest import explain, gw_run

POOLS = r"""
import ctypes
cuda = ctypes.CDLL("libcuda.so.1")
INVALID_VALUE = 1
DEVICE, PINNED, READWRITE, PROT_NONE = 1, 1, 3, 0
FOLLOW_EVENTS, OPPORTUNISTIC, INTERNAL, THRESHOLD, RESERVED, RESERVED_HIGH, USED, USED_HIGH = range(1, 9)

class Loc(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("id", ctypes.c_int)]

class Access(ctypes.Structure):
    _fields_ = [("location", Loc), ("flags", ctypes.c_int)]

class Props(ctypes.Structure):
    _fields_ = [("allocType", ctypes.c_int), ("handleTypes", ctypes.c_int), ("location", Loc),
                ("win32SecurityAttributes", ctypes.c_void_p), ("maxSize", ctypes.c_size_t),
                ("usage", ctypes.c_ushort), ("reserved", ctypes.c_ubyte * 54)]

assert ctypes.sizeof(Props) == 88, ctypes.sizeof(Props)
assert cuda.cuInit(0) == 0
dev, ctx = ctypes.c_int(), ctypes.c_void_p()
assert cuda.cuDeviceGet(ctypes.byref(dev), 0) == 0
assert cuda.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) == 0
assert cuda.cuCtxSetCurrent(ctx) == 0

loc = Loc(DEVICE, 0)
default, current, viadev = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_void_p()
assert cuda.cuMemGetDefaultMemPool(ctypes.byref(default), ctypes.byref(loc), PINNED) == 0 and default.value
assert cuda.cuMemGetMemPool(ctypes.byref(current), ctypes.byref(loc), PINNED) == 0
assert current.value == default.value
assert cuda.cuDeviceGetDefaultMemPool(ctypes.byref(viadev), dev) == 0 and viadev.value == default.value
assert cuda.cuMemGetDefaultMemPool(ctypes.byref(default), ctypes.byref(Loc(DEVICE, 5)), PINNED) != 0
assert cuda.cuMemGetDefaultMemPool(ctypes.byref(default), None, PINNED) == INVALID_VALUE

props = Props(PINNED, 0, Loc(DEVICE, 0))
pool = ctypes.c_void_p()
assert cuda.cuMemPoolCreate(ctypes.byref(pool), ctypes.byref(props)) == 0 and pool.value
assert cuda.cuMemSetMemPool(ctypes.byref(loc), PINNED, pool) == 0
assert cuda.cuMemGetMemPool(ctypes.byref(current), ctypes.byref(loc), PINNED) == 0 and current.value == pool.value

# attributes: ints and 64-bit values, each at its own size
flag = ctypes.c_int(7)
assert cuda.cuMemPoolGetAttribute(pool, OPPORTUNISTIC, ctypes.byref(flag)) == 0 and flag.value == 0
assert cuda.cuMemPoolSetAttribute(pool, OPPORTUNISTIC, ctypes.byref(ctypes.c_int(1))) == 0
assert cuda.cuMemPoolGetAttribute(pool, OPPORTUNISTIC, ctypes.byref(flag)) == 0 and flag.value == 1
wide = (ctypes.c_uint64 * 2)(0, 0xDEADBEEF)  # the second word must stay as it is
assert cuda.cuMemPoolSetAttribute(pool, THRESHOLD, ctypes.byref(ctypes.c_uint64(3 << 40))) == 0
assert cuda.cuMemPoolGetAttribute(pool, THRESHOLD, wide) == 0 and list(wide) == [3 << 40, 0xDEADBEEF]
narrow = (ctypes.c_int * 2)(5, 0x1234)
assert cuda.cuMemPoolGetAttribute(default, FOLLOW_EVENTS, narrow) == 0 and list(narrow) == [1, 0x1234]
used = ctypes.c_uint64(9)
assert cuda.cuMemPoolGetAttribute(pool, USED, ctypes.byref(used)) == 0 and used.value == 0
assert cuda.cuMemPoolSetAttribute(pool, USED_HIGH, ctypes.byref(ctypes.c_uint64(0))) == 0
assert cuda.cuMemPoolSetAttribute(pool, RESERVED, ctypes.byref(ctypes.c_uint64(0))) == INVALID_VALUE
assert cuda.cuMemPoolGetAttribute(pool, 1000, ctypes.byref(used)) == INVALID_VALUE  # refused in the client
assert cuda.cuMemPoolGetAttribute(pool, THRESHOLD, None) == INVALID_VALUE

# access
descs = (Access * 1)(Access(Loc(DEVICE, 0), READWRITE))
assert cuda.cuMemPoolSetAccess(pool, descs, 1) == 0
descs[0].flags = PROT_NONE
assert cuda.cuMemPoolSetAccess(pool, descs, 1) == INVALID_VALUE
fl = ctypes.c_int(-1)
assert cuda.cuMemPoolGetAccess(ctypes.byref(fl), pool, ctypes.byref(loc)) == 0 and fl.value == READWRITE

assert cuda.cuMemPoolDestroy(pool) == 0
assert cuda.cuMemGetMemPool(ctypes.byref(current), ctypes.byref(loc), PINNED) == 0
assert current.value == default.value
print("ok")
"""

TENSOR_MAPS = r"""
import ctypes, struct
cuda = ctypes.CDLL("libcuda.so.1")
INVALID_VALUE = 1
assert cuda.cuInit(0) == 0
dev, ctx = ctypes.c_int(), ctypes.c_void_p()
assert cuda.cuDeviceGet(ctypes.byref(dev), 0) == 0
assert cuda.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) == 0
assert cuda.cuCtxSetCurrent(ctx) == 0
U64, U32 = ctypes.c_uint64, ctypes.c_uint32
tmap = (ctypes.c_ubyte * 128)()
addr = 0x7f0000001000
dims = (U64 * 4)(64, 32, 32, 8)
strides = (U64 * 3)(128, 4096, 131072)
lower, upper = (ctypes.c_int * 2)(-1, -2), (ctypes.c_int * 2)(3, 4)
estr = (U32 * 4)(1, 1, 1, 1)
fn = cuda.cuTensorMapEncodeIm2col
fn.argtypes = [ctypes.c_void_p, ctypes.c_int, U32, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
               ctypes.c_void_p, ctypes.c_void_p, U32, U32, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
               ctypes.c_int, ctypes.c_int]
assert fn(tmap, 6, 4, addr, dims, strides, lower, upper, 64, 128, estr, 0, 3, 2, 1) == 0
b = bytes(tmap)
assert struct.unpack_from("<Q", b, 0)[0] == addr
assert b[8:16] == bytes([1, 4, 6, 0, 3, 2, 1, 0]), b[8:16]
assert struct.unpack_from("<4I", b, 16) == (64, 32, 32, 8)
assert struct.unpack_from("<3I", b, 36) == (8, 256, 8192)
assert struct.unpack_from("<2h", b, 52) == (-1, -2) and struct.unpack_from("<2h", b, 58) == (3, 4)
assert struct.unpack_from("<2I", b, 64) == (64, 128) and b[72:76] == bytes([1, 1, 1, 1])
# rank 2 is refused by the driver (im2col needs 3..5), without breaking the session
assert fn(tmap, 6, 2, addr, dims, strides, lower, upper, 64, 128, estr, 0, 3, 2, 1) == INVALID_VALUE
wfn = cuda.cuTensorMapEncodeIm2colWide
wfn.argtypes = [ctypes.c_void_p, ctypes.c_int, U32, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                ctypes.c_int, ctypes.c_int, U32, U32, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                ctypes.c_int, ctypes.c_int]
assert wfn(tmap, 6, 3, addr, dims, strides, -5, 7, 32, 64, estr, 0, 1, 3, 2, 0) == 0
b = bytes(tmap)
assert b[8:16] == bytes([2, 3, 6, 0, 3, 2, 0, 1]), b[8:16]
assert struct.unpack_from("<h", b, 52)[0] == -5 and struct.unpack_from("<h", b, 58)[0] == 7
assert struct.unpack_from("<3I", b, 16) == (64, 32, 32) and struct.unpack_from("<2I", b, 36) == (8, 256)
assert wfn(tmap, 6, 3, addr + 8, dims, strides, -5, 7, 32, 64, estr, 0, 1, 3, 2, 0) == INVALID_VALUE
print("ok")
"""


def _run(server, script):
    r = gw_run([sys.executable, "-c", script], server=server.address)
    assert r.returncode == 0 and r.stdout.strip() == "ok", explain(r, server)


def test_memory_pools(server):
    _run(server, POOLS)


def test_im2col_tensor_maps(server):
    _run(server, TENSOR_MAPS)
