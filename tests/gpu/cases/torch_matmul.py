"""cuBLAS through torch: fp32 and fp16 matmuls, results digested."""
import hashlib

import torch

torch.manual_seed(0)
a = torch.randn(1024, 512, device="cuda")
b = torch.randn(512, 768, device="cuda")
c = a @ b
h = (a.half() @ b.half()).float()
torch.cuda.synchronize()
for name, t in (("fp32", c), ("fp16", h)):
    print(name, tuple(t.shape), hashlib.sha256(t.cpu().numpy().tobytes()).hexdigest()[:32])
