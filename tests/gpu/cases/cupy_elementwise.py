"""A CuPy elementwise kernel (compiled by NVRTC, loaded as a module)."""
import hashlib

import cupy as cp

k = cp.ElementwiseKernel("float32 x, float32 y", "float32 z", "z = x * x + 2.0f * y", "gw_sq_plus")
x = cp.arange(100000, dtype=cp.float32) / 7
y = cp.ones(100000, dtype=cp.float32)
z = k(x, y)
print("sum", repr(float(z.astype(cp.float64).sum())))
print("digest", hashlib.sha256(cp.asnumpy(z).tobytes()).hexdigest()[:32])
