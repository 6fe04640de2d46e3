"""Allocates N GiB on the GPU through the driver API, says so, then sleeps until
killed: the process tests/gpu/gpu-control kills mid-session."""
import ctypes
import sys
import time

gib = float(sys.argv[1]) if len(sys.argv) > 1 else 4.0
cuda = ctypes.CDLL("libcuda.so.1")
dev, ctx, ptr = ctypes.c_int(), ctypes.c_void_p(), ctypes.c_uint64()
assert cuda.cuInit(0) == 0 and cuda.cuDeviceGet(ctypes.byref(dev), 0) == 0
assert cuda.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) == 0 and cuda.cuCtxSetCurrent(ctx) == 0
assert cuda.cuMemAlloc_v2(ctypes.byref(ptr), ctypes.c_size_t(int(gib * (1 << 30)))) == 0
assert cuda.cuMemsetD8_v2(ptr, 7, ctypes.c_size_t(int(gib * (1 << 30)))) == 0
assert cuda.cuCtxSynchronize() == 0
print(f"hold_memory: holding {gib:g} GiB", flush=True)
time.sleep(600)
