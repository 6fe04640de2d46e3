"""torch.compile (Inductor, Triton kernels built in a private cache): an MLP with LayerNorm/GELU/softmax trained 3 steps, and a fused elementwise+reduction function; deterministic mode; compared within a tolerance, since Inductor may still pick kernel configurations per run."""
# compat: timeout=300
from _common import Digest, emit, prepare, values_of

prepare(cublas=True, caches=True)
import torch
import torch.nn as nn

# Deterministic mode also asks Inductor not to autotune (where this version supports it).
torch.use_deterministic_algorithms(True)
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(128, 256), nn.LayerNorm(256), nn.GELU(), nn.Linear(256, 64)).cuda()
opt = torch.optim.SGD(model.parameters(), lr=0.1)
cmodel = torch.compile(model)


@torch.compile
def fused(a, b):
    return torch.softmax(a.sin() * b + a.cos(), dim=-1).sum(0) + (a * b).amax(1).mean()


x = torch.randn(512, 128, device="cuda")
target = torch.randn(512, 64, device="cuda")
losses = []
for _ in range(3):
    opt.zero_grad(set_to_none=True)
    loss = ((cmodel(x) - target) ** 2).mean()
    loss.backward()
    opt.step()
    losses.append(loss.item())
a, b = torch.randn(1000, 300, device="cuda"), torch.randn(1000, 300, device="cuda")
f = fused(a, b)
out = cmodel(x)
eager = model(x)
torch.cuda.synchronize()
d = Digest().add("losses", losses).add("fused", f).add("out", out)
vals = losses + values_of(f) + values_of(out.sum(1)) + values_of(model[0].weight[:8].flatten())
vals.append(float((out - eager).abs().max() < 1e-4))
emit("torch_compile", d.hexdigest(), tolerance="rtol=1e-5 atol=1e-6", values=vals, rtol=1e-5, atol=1e-6,
     notes=f"Inductor/Triton; losses {losses[0]:.5f}->{losses[-1]:.5f}; also checks compiled == eager within 1e-4")
