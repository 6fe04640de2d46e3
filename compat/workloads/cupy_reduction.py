"""CuPy reductions: a user ReductionKernel, sum/mean/max/argmax/std along axes and whole arrays, an integer cumsum (a float scan may combine in another order per run), sort and unique."""
from _common import Digest, emit, prepare

prepare(caches=True)
import cupy as cp

rs = cp.random.RandomState(0)
x = rs.standard_normal((2000, 513), dtype=cp.float32)
l2 = cp.ReductionKernel("T x", "T y", "x * x", "a + b", "y = sqrt(a)", "0", "compat_l2norm")
d = Digest().add("l2", l2(x, axis=1)).add("sum", x.sum()).add("sum0", x.sum(0)).add("mean1", x.mean(1))
d.add("max", x.max(1)).add("argmax", x.argmax(0)).add("std", x.std(1)).add("sum_f64", x.astype(cp.float64).sum())
d.add("cumsum_int", cp.cumsum((x[:, 0] * 1000).astype(cp.int64))).add("sort", cp.sort(x[:100], axis=1))
u, c = cp.unique((x[:, :4] * 10).astype(cp.int32), return_counts=True)
d.add("unique", u).add("counts", c)
emit("cupy_reduction", d.hexdigest(), notes=f"cupy {cp.__version__}; sha256 of 12 results")
