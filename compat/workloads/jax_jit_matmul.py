"""JAX on the GPU: jit-compiled matmul chains (float32 at highest precision, bfloat16 inputs with float32 accumulation), an elementwise epilogue and a reduction; XLA may autotune its GEMM algorithm per run, so values are compared within a tolerance."""
# compat: timeout=180
import _jax  # noqa: F401
from _common import Digest, emit, prepare, values_of

prepare()
import jax
import jax.numpy as jnp

jax.config.update("jax_default_matmul_precision", "highest")
k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
a = jax.random.normal(k1, (512, 256), jnp.float32)
b = jax.random.normal(k2, (256, 384), jnp.float32)
c = jax.random.normal(k3, (384, 128), jnp.float32)


@jax.jit
def f(a, b, c):
    h = jnp.tanh(a @ b) * 2.0 + 1.0
    return h @ c, jnp.sum(h * h, axis=0)


@jax.jit
def g(a, b):
    return jnp.matmul(a.astype(jnp.bfloat16), b.astype(jnp.bfloat16), preferred_element_type=jnp.float32)


out, red = f(a, b, c)
lo = g(a, b)
out.block_until_ready()
dev = jax.devices()[0]
d = Digest().add("out", out).add("red", red).add("bf16", lo)
vals = values_of(out.sum(axis=1)) + values_of(out[:4].reshape(-1)) + values_of(red) + values_of(lo.sum(axis=0))
emit("jax_jit_matmul", d.hexdigest(), tolerance="rtol=1e-4 atol=1e-2", values=vals, rtol=1e-4, atol=1e-2,
     same={"platform": dev.platform, "kind": dev.device_kind},
     notes=f"jax {jax.__version__} on {dev.device_kind}; values: row sums, 4 rows, column reductions, bf16-input column sums (sums of hundreds of values: atol 1e-2)")
