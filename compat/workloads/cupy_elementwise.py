"""CuPy elementwise: a user ElementwiseKernel (NVRTC-compiled), ufuncs, broadcasting, casts, where, integer ops; kernel cache private so both runs compile."""
from _common import Digest, emit, prepare

prepare(caches=True)
import cupy as cp

k = cp.ElementwiseKernel("float32 x, float32 y", "float32 z", "z = x * x + 2.0f * y - sinf(x)", "compat_sq_plus")
x = cp.arange(1 << 20, dtype=cp.float32) / 7
y = cp.linspace(-3, 3, 1 << 20, dtype=cp.float32)
d = Digest().add("kernel", k(x, y)).add("ufuncs", cp.exp(cp.sin(x)) * cp.sqrt(x + 1) - cp.tanh(y))
m = cp.arange(1000 * 300, dtype=cp.float64).reshape(1000, 300)
d.add("bcast", m / (cp.arange(300) + 1) + cp.arange(1000)[:, None]).add("where", cp.where(y > 0, x, -x))
i = cp.arange(1 << 16, dtype=cp.int64)
d.add("ints", (i * 7919) % 10007 ^ (i >> 2)).add("casts", (y * 100).astype(cp.int16).astype(cp.float16))
emit("cupy_elementwise", d.hexdigest(), notes=f"cupy {cp.__version__}; sha256 of 6 results")
