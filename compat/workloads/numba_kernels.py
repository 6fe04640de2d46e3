"""numba-cuda @cuda.jit kernels: saxpy, a 2-D tiled matmul with shared memory, a block reduction, an integer atomic histogram; device arrays, a stream, copies both ways."""
# compat: timeout=150
from _common import Digest, emit, prepare

prepare(caches=True)
import numpy as np

# numba 0.68 still names np.row_stack, which numpy 2.5 (on the GPU machine)
# removed; its replacement is np.vstack. Without this numba does not import,
# natively or through gpuwire. Not a change to what the workload measures.
if not hasattr(np, "row_stack"):
    np.row_stack = np.vstack
from numba import cuda, float32, int32  # noqa: E402

TILE = 16


@cuda.jit
def saxpy(a, x, y, out):
    i = cuda.grid(1)
    if i < out.size:
        out[i] = a * x[i] + y[i]


@cuda.jit
def matmul(A, B, C):
    sA = cuda.shared.array((TILE, TILE), float32)
    sB = cuda.shared.array((TILE, TILE), float32)
    x, y = cuda.grid(2)
    tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
    acc = float32(0.0)
    for t in range((A.shape[1] + TILE - 1) // TILE):
        sA[ty, tx] = A[y, t * TILE + tx] if y < A.shape[0] and t * TILE + tx < A.shape[1] else 0.0
        sB[ty, tx] = B[t * TILE + ty, x] if x < B.shape[1] and t * TILE + ty < B.shape[0] else 0.0
        cuda.syncthreads()
        for k in range(TILE):
            acc += sA[ty, k] * sB[k, tx]
        cuda.syncthreads()
    if y < C.shape[0] and x < C.shape[1]:
        C[y, x] = acc


@cuda.jit
def block_sum(x, out):
    s = cuda.shared.array(256, float32)
    i = cuda.grid(1)
    t = cuda.threadIdx.x
    s[t] = x[i] if i < x.size else 0.0
    cuda.syncthreads()
    k = 128
    while k > 0:
        if t < k:
            s[t] += s[t + k]
        cuda.syncthreads()
        k //= 2
    if t == 0:
        out[cuda.blockIdx.x] = s[0]


@cuda.jit
def histogram(data, bins):
    i = cuda.grid(1)
    if i < data.size:
        cuda.atomic.add(bins, data[i] % bins.size, int32(1))


rng = np.random.default_rng(0)
n = 1 << 20
x = rng.standard_normal(n).astype(np.float32)
y = rng.standard_normal(n).astype(np.float32)
stream = cuda.stream()
dx, dy = cuda.to_device(x, stream=stream), cuda.to_device(y, stream=stream)
dout = cuda.device_array_like(dx, stream=stream)
saxpy[(n + 255) // 256, 256, stream](np.float32(1.5), dx, dy, dout)
sums = cuda.device_array((n + 255) // 256, np.float32, stream=stream)
block_sum[(n + 255) // 256, 256, stream](dout, sums)
A = rng.standard_normal((200, 150)).astype(np.float32)
B = rng.standard_normal((150, 170)).astype(np.float32)
dC = cuda.device_array((200, 170), np.float32, stream=stream)
matmul[((170 + TILE - 1) // TILE, (200 + TILE - 1) // TILE), (TILE, TILE), stream](cuda.to_device(A, stream=stream), cuda.to_device(B, stream=stream), dC)
data = cuda.to_device(rng.integers(0, 1 << 30, 100000).astype(np.int32), stream=stream)
bins = cuda.to_device(np.zeros(64, np.int32), stream=stream)
histogram[(100000 + 255) // 256, 256, stream](data, bins)
out, s, C, h = dout.copy_to_host(stream=stream), sums.copy_to_host(stream=stream), dC.copy_to_host(stream=stream), bins.copy_to_host(stream=stream)
stream.synchronize()
checks = [bool(np.allclose(out, np.float32(1.5) * x + y, rtol=1e-6, atol=1e-6)), bool(np.allclose(C, A @ B, rtol=1e-4, atol=1e-4)), int(h.sum()) == 100000]
d = Digest().add("saxpy", out).add("sums", s).add("matmul", C).add("hist", h).add("checks", checks)
emit("numba_kernels", d.hexdigest(), notes=f"checks against numpy: {checks}")
