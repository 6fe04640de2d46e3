"""Random numbers in CuPy with fixed seeds: RandomState (cuRAND) uniform, normal, integers, permutation; default_rng (CuPy's own bit generator) random and normal."""
from _common import Digest, emit, prepare

prepare(caches=True)
import cupy as cp

rs = cp.random.RandomState(42)
d = Digest().add("uniform", rs.uniform(size=100000, dtype=cp.float32)).add("normal", rs.standard_normal(50000))
d.add("ints", rs.randint(0, 1000, size=20000)).add("perm", rs.permutation(3000))
g = cp.random.default_rng(7)
d.add("rng_random", g.random(10000)).add("rng_normal", g.standard_normal(10000))
emit("cupy_random", d.hexdigest(), notes=f"cupy {cp.__version__}; sha256 of 6 draws")
