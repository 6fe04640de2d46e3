"""Times NVRTC compiling one kernel a few times (a CPU-only job): run natively and
through gpuwire, it shows whether the client's environment slows compilers down.
Usage: python3 scripts/nvrtc-time.py [REPEATS]"""
import ctypes
import glob
import site
import sys
import time

paths = [p for d in site.getsitepackages() for p in glob.glob(d + "/nvidia/**/libnvrtc.so*", recursive=True)]
paths += glob.glob("/usr/local/cuda/lib64/libnvrtc.so*")
lib = ctypes.CDLL(sorted(p for p in paths if "builtins" not in p)[0])
SRC = b"""
extern "C" __global__ void saxpy(float a, const float *x, float *y, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        y[i] = a * x[i] + y[i] * __expf(x[i]) / (1.0f + __sinf(y[i]));
}"""
opts = (ctypes.c_char_p * 2)(b"-arch=sm_90", b"-default-device")
times = []
for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 5):
    prog = ctypes.c_void_p()
    assert lib.nvrtcCreateProgram(ctypes.byref(prog), SRC, b"k.cu", 0, None, None) == 0
    t = time.perf_counter()
    rc = lib.nvrtcCompileProgram(prog, 2, opts)
    times.append(time.perf_counter() - t)
    assert rc == 0, rc
    lib.nvrtcDestroyProgram(ctypes.byref(prog))
print(f"nvrtc: {len(times)} compiles, median {sorted(times)[len(times) // 2] * 1e3:.1f} ms, first {times[0] * 1e3:.1f} ms")
