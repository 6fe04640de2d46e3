"""CuPy RawKernel and RawModule from CUDA C++ source (NVRTC): a grid-stride kernel, shared-memory block sums, a template instantiated by name expression; launched with explicit grids and streams."""
from _common import Digest, emit, prepare

prepare(caches=True)
import cupy as cp

saxpy = cp.RawKernel(r'''
extern "C" __global__ void saxpy(float a, const float* x, const float* y, float* out, int n) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        out[i] = a * x[i] + y[i];
}''', "saxpy")
mod = cp.RawModule(code=r'''
extern "C" __global__ void block_sums(const float* x, float* out, int n) {
    __shared__ float s[256];
    int i = blockIdx.x * 256 + threadIdx.x;
    s[threadIdx.x] = i < n ? x[i] : 0.0f;
    __syncthreads();
    for (int k = 128; k > 0; k >>= 1) {
        if (threadIdx.x < k) s[threadIdx.x] += s[threadIdx.x + k];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[blockIdx.x] = s[0];
}
template <typename T> __global__ void scale(T* x, T f, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] *= f;
}''', options=("-std=c++17",), name_expressions=["scale<double>"])
n = 1000003
x = cp.arange(n, dtype=cp.float32) / 1000
y = cp.ones(n, dtype=cp.float32)
out = cp.empty_like(x)
stream = cp.cuda.Stream(non_blocking=True)
with stream:
    saxpy((80,), (256,), (cp.float32(2.5), x, y, out, cp.int32(n)))
    sums = cp.zeros((n + 255) // 256, dtype=cp.float32)
    mod.get_function("block_sums")((sums.size,), (256,), (out, sums, cp.int32(n)))
    z = cp.arange(5000, dtype=cp.float64)
    mod.get_function("scale<double>")((20,), (256,), (z, cp.float64(0.25), cp.int32(5000)))
stream.synchronize()
d = Digest().add("saxpy", out).add("block_sums", sums).add("scale", z)
emit("cupy_rawkernel", d.hexdigest(), notes=f"cupy {cp.__version__}; sha256 of 3 kernel outputs")
