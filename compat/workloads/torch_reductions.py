"""PyTorch eager reductions: sum, mean, prod, min/max with indices, var/std, norms, logsumexp, any/all, over whole tensors and along dimensions."""
from _common import Digest, emit, prepare

prepare()
import torch

torch.manual_seed(0)
d = Digest()
big = torch.randn(1 << 24, device="cuda")
m = torch.randn(1000, 777, device="cuda")
t = torch.randn(16, 64, 130, device="cuda")
d.add("sum_big", big.sum()).add("mean_big", big.mean()).add("sum_big_f64", big.double().sum())
d.add("sum0", m.sum(0)).add("sum1", m.sum(1)).add("mean_t", t.mean((0, 2)))
d.add("prod", (1 + m[:, :50] / 100).prod(1)).add("amax", m.amax(1)).add("amin", t.amin((1, 2)))
vals, idx = m.max(1)
d.add("max", vals).add("argmax", idx).add("argmin", m.argmin(0))
d.add("var", m.var(1)).add("std", t.std(2, correction=0)).add("norm", torch.linalg.vector_norm(m, dim=1))
d.add("norm_inf", torch.linalg.vector_norm(t, ord=float("inf"), dim=1))
d.add("logsumexp", torch.logsumexp(m, 1)).add("any", (m > 3).any(1)).add("all", (m > -4).all(0))
d.add("count", torch.count_nonzero(m > 1, dim=0)).add("half_sum", m.half().sum(1))
d.add("int_sum", torch.arange(1 << 20, device="cuda").sum())
emit("torch_reductions", d.hexdigest(), notes="sha256 of 21 results")
