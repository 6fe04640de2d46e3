"""Triton kernels written directly with @triton.jit (built in a private cache): vector add with a tail mask, a row softmax (one program per row, reductions inside), launched on torch tensors."""
# compat: timeout=180
from _common import Digest, emit, prepare

prepare(caches=True)
import torch
import triton
import triton.language as tl


@triton.jit
def add_kernel(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(x_ptr + offs, mask=mask)
    y = tl.load(y_ptr + offs, mask=mask)
    tl.store(out_ptr + offs, x + y, mask=mask)


@triton.jit
def softmax_kernel(out_ptr, in_ptr, in_stride, out_stride, n_cols, BLOCK: tl.constexpr):
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    x = tl.load(in_ptr + row * in_stride + cols, mask=mask, other=-float("inf"))
    x = x - tl.max(x, axis=0)
    num = tl.exp(x)
    tl.store(out_ptr + row * out_stride + cols, num / tl.sum(num, axis=0), mask=mask)


torch.manual_seed(0)
n = 98432
x, y = torch.rand(n, device="cuda"), torch.rand(n, device="cuda")
out = torch.empty_like(x)
add_kernel[(triton.cdiv(n, 1024),)](x, y, out, n, BLOCK=1024)
m = torch.randn(1823, 781, device="cuda")
sm = torch.empty_like(m)
softmax_kernel[(m.shape[0],)](sm, m, m.stride(0), sm.stride(0), m.shape[1], BLOCK=triton.next_power_of_2(m.shape[1]))
torch.cuda.synchronize()
checks = [torch.equal(out, x + y), torch.allclose(sm, torch.softmax(m, 1), rtol=1e-5, atol=1e-6)]
d = Digest().add("add", out).add("softmax", sm).add("checks", checks)
emit("triton_kernels", d.hexdigest(), notes=f"triton {triton.__version__}; equal to torch: {checks}")
