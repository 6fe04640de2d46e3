"""PyTorch scans: cumsum (float, int, large), cumprod, cummax/cummin, logcumsumexp, diff, along several dimensions; deterministic mode."""
from _common import Digest, emit, prepare

prepare(cublas=True)
import torch

# A 1-D float cumsum goes through a CUB scan whose combining order may vary
# run to run; deterministic mode selects PyTorch's deterministic scan.
torch.use_deterministic_algorithms(True)
torch.manual_seed(0)
d = Digest()
x = torch.randn(1 << 20, device="cuda")
m = torch.randn(257, 513, device="cuda")
d.add("cumsum_big", x.cumsum(0)).add("cumsum0", m.cumsum(0)).add("cumsum1", m.cumsum(1))
d.add("cumsum_int", torch.randint(-100, 100, (1 << 20,), device="cuda").cumsum(0))
d.add("cumprod", (1 + m / 50).cumprod(1)).add("logcumsumexp", torch.logcumsumexp(m, 1))
v, i = m.cummax(1)
d.add("cummax_v", v).add("cummax_i", i)
v, i = m.cummin(0)
d.add("cummin_v", v).add("cummin_i", i).add("diff", torch.diff(m, dim=1))
emit("torch_cumsum", d.hexdigest(), notes="sha256 of 11 results")
