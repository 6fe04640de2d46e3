"""Create tensors on the GPU, compute, bring results back; print digests."""
import hashlib

import torch

torch.manual_seed(0)
x = torch.arange(1 << 20, device="cuda", dtype=torch.float32)
y = torch.randn(1 << 20, device="cuda")
z = (x * 0.5 + y).sin() * y.exp().clamp(max=10)
host = z.cpu()
print("device", torch.cuda.get_device_name(0), "count", torch.cuda.device_count())
print("sum", repr(float(host.double().sum())))
print("digest", hashlib.sha256(host.numpy().tobytes()).hexdigest()[:32])
print("ints", torch.arange(10, device="cuda").mul(3).tolist())
