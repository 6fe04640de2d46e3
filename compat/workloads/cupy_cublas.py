"""cuBLAS through CuPy: matmul in float32, float64 and float16, dot, batched matmul, matrix-vector, tensordot."""
from _common import Digest, emit, prepare

prepare(caches=True)
import cupy as cp

rs = cp.random.RandomState(1)
a = rs.standard_normal((1024, 512), dtype=cp.float32)
b = rs.standard_normal((512, 768), dtype=cp.float32)
d = Digest().add("f32", a @ b).add("f64", a.astype(cp.float64) @ b.astype(cp.float64))
d.add("f16", a.astype(cp.float16) @ b.astype(cp.float16)).add("dot", cp.dot(a[0], b[:, 0]))
d.add("batched", cp.matmul(a.reshape(8, 128, 512), b[:, :64])).add("mv", a @ b[:, 1])
d.add("tensordot", cp.tensordot(a.reshape(32, 32, 512), b, axes=([2], [0])))
emit("cupy_cublas", d.hexdigest(), notes=f"cupy {cp.__version__}; sha256 of 7 products")
