"""JAX autodiff on the GPU: jit(value_and_grad) of an MLP loss, 5 SGD steps, plus vmap of per-example gradients; compared within a tolerance (XLA may autotune per run)."""
# compat: timeout=180
import _jax  # noqa: F401
from _common import Digest, emit, prepare, values_of

prepare()
import jax
import jax.numpy as jnp

jax.config.update("jax_default_matmul_precision", "highest")
keys = jax.random.split(jax.random.PRNGKey(1), 5)
params = {"w1": jax.random.normal(keys[0], (32, 64)) * 0.2, "b1": jnp.zeros(64),
          "w2": jax.random.normal(keys[1], (64, 1)) * 0.2, "b2": jnp.zeros(1)}
x = jax.random.normal(keys[2], (256, 32))
y = jnp.sin(x[:, :1]) + 0.1 * jax.random.normal(keys[3], (256, 1))


def loss(p, x, y):
    h = jax.nn.gelu(x @ p["w1"] + p["b1"])
    return jnp.mean((h @ p["w2"] + p["b2"] - y) ** 2)


step = jax.jit(jax.value_and_grad(loss))
losses = []
for _ in range(5):
    value, grads = step(params, x, y)
    params = jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, params, grads)
    losses.append(float(value))
per_example = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0, 0)))(params, x[:8, None], y[:8, None])
dev = jax.devices()[0]
d = Digest().add("losses", losses)
for k in sorted(params):
    d.add(k, params[k])
vals = losses + values_of(params["w2"]) + values_of(params["b1"]) + values_of(params["w1"][:4])
vals += values_of(jnp.linalg.norm(per_example["w1"].reshape(8, -1), axis=1))
emit("jax_grad", d.hexdigest(), tolerance="rtol=1e-4 atol=1e-5", values=vals, rtol=1e-4, atol=1e-5,
     same={"platform": dev.platform, "kind": dev.device_kind},
     notes=f"jax {jax.__version__}; losses {losses[0]:.5f}->{losses[-1]:.5f}; values: losses, parameters, per-example gradient norms")
