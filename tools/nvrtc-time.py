"""Times NVRTC compiling one kernel a few times (a CPU-only job): run natively and
through gpuwire, it shows whether the client's environment slows compilers down.
Usage: python3 tools/nvrtc-time.py [REPEATS]
(NVRTC_LIB: the libnvrtc to use; NVRTC_OPTS: extra options, space-separated)"""
import ctypes
import glob
import os
import site
import sys
import time

paths = [p for d in site.getsitepackages() for p in glob.glob(d + "/nvidia/**/libnvrtc.so*", recursive=True)]
paths += glob.glob("/usr/local/cuda/lib64/libnvrtc.so*")
paths = [os.environ["NVRTC_LIB"]] if os.environ.get("NVRTC_LIB") else sorted(p for p in paths if "builtins" not in p)
lib = ctypes.CDLL(paths[0])
SRC = b"""
extern "C" __global__ void saxpy(float a, const float *x, float *y, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        y[i] = a * x[i] + y[i] * __expf(x[i]) / (1.0f + __sinf(y[i]));
}"""
extra = [o.encode() for o in os.environ.get("NVRTC_OPTS", "").split()]
opts = (ctypes.c_char_p * (2 + len(extra)))(b"-arch=sm_90", b"-default-device", *extra)
times = []
for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 5):
    prog = ctypes.c_void_p()
    assert lib.nvrtcCreateProgram(ctypes.byref(prog), SRC, b"k.cu", 0, None, None) == 0
    t = time.perf_counter()
    rc = lib.nvrtcCompileProgram(prog, len(opts), opts)
    times.append(time.perf_counter() - t)
    assert rc == 0, rc
    lib.nvrtcDestroyProgram(ctypes.byref(prog))
print(f"nvrtc: {len(times)} compiles, median {sorted(times)[len(times) // 2] * 1e3:.1f} ms, first {times[0] * 1e3:.1f} ms")
