"""scaled_dot_product_attention forward in bf16 with each fused backend (flash, memory-efficient, cuDNN where available) and the math one, causal and not."""
from _common import Digest, emit, prepare

prepare(cublas=True)
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

torch.manual_seed(0)
q, k, v = (torch.randn(4, 8, 256, 64, device="cuda", dtype=torch.bfloat16) for _ in range(3))
d = Digest()
ran = []
for backend in (SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.MATH):
    for causal in (False, True):
        try:
            with sdpa_kernel(backend):
                out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        except RuntimeError as e:  # a backend this build or card lacks: the same natively and remotely
            d.add(f"{backend.name}_{causal}", f"unavailable: {type(e).__name__}")
            continue
        d.add(f"{backend.name}_{causal}", out)
        ran.append(f"{backend.name.lower()}{'/causal' if causal else ''}")
emit("torch_sdpa", d.hexdigest(), notes="sha256 of outputs; ran " + ", ".join(ran))
