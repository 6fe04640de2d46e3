"""The body of the torch_matmul_* workloads: cuBLAS/cuBLASLt products in one precision."""
from _common import Digest, emit, prepare

prepare(cublas=True)
import torch


def run(kind):
    torch.backends.cuda.matmul.allow_tf32 = kind == "tf32"
    dtype = {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[kind]
    torch.manual_seed(0)
    d = Digest()

    def r(*shape):
        return torch.randn(*shape, device="cuda").to(dtype)

    a, b = r(1024, 512), r(512, 768)
    d.add("mm", a @ b).add("mm_t", a.t().contiguous().t() @ b).add("mm_bt", a @ b.t().contiguous().t())
    d.add("odd", r(333, 517) @ r(517, 129)).add("bmm", torch.bmm(r(8, 128, 64), r(8, 64, 96)))
    d.add("addmm", torch.addmm(r(768), a, b)).add("linear", torch.nn.functional.linear(a, r(256, 512), r(256)))
    d.add("mv", r(2048, 1024) @ r(1024)).add("baddbmm", torch.baddbmm(r(4, 32, 48), r(4, 32, 16), r(4, 16, 48), alpha=0.5))
    d.add("matmul_4d", torch.matmul(r(2, 3, 64, 32), r(2, 3, 32, 80)))
    emit(f"torch_matmul_{kind}", d.hexdigest(), notes=f"{dtype} (tf32 {'on' if kind == 'tf32' else 'off'}); sha256 of 10 products")
