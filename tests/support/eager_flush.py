"""Run under `gpuwire run` by tests/e2e/test_eager_flush.py: a synchronize,
then a posted memset and a host pause before the next synchronize, as a
decode loop's next token: cuCtxSynchronize, cuMemsetD8_v2 (posted), sleep
PAUSE seconds, cuCtxSynchronize.

    python eager_flush.py PAUSE"""

import ctypes
import sys
import time


def main() -> int:
    pause = float(sys.argv[1])
    lib = ctypes.CDLL("libcuda.so.1")
    dev, ctx, ptr = ctypes.c_int(), ctypes.c_void_p(), ctypes.c_uint64()
    rcs = [lib.cuInit(0), lib.cuDeviceGet(ctypes.byref(dev), 0),
           lib.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev), lib.cuCtxSetCurrent(ctx),
           lib.cuMemAlloc_v2(ctypes.byref(ptr), ctypes.c_size_t(1 << 16)), lib.cuCtxSynchronize(),
           lib.cuMemsetD8_v2(ptr, ctypes.c_ubyte(7), ctypes.c_size_t(1 << 16))]
    time.sleep(pause)
    rcs.append(lib.cuCtxSynchronize())
    print("RESULT", rcs, flush=True)
    return 0 if not any(rcs) else 1


if __name__ == "__main__":
    sys.exit(main())
