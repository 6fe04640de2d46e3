"""PyTorch indexing: gather, scatter, index_select, masked_select, boolean and advanced indexing, index_put, nonzero, take, index_add (integer-valued, so order-free)."""
from _common import Digest, emit, prepare

prepare()
import torch

torch.manual_seed(0)
d = Digest()
x = torch.randn(1000, 64, device="cuda")
idx = torch.randint(0, 64, (1000, 16), device="cuda")
d.add("gather", torch.gather(x, 1, idx))
perm = torch.randperm(64, device="cuda")
d.add("scatter", torch.zeros(1000, 64, device="cuda").scatter(1, perm.expand(1000, 64), x))
rows = torch.randint(0, 1000, (300,), device="cuda")
d.add("index_select", x.index_select(0, rows)).add("adv", x[rows, rows % 64])
mask = x > 0.5
d.add("masked_select", x.masked_select(mask)).add("bool_idx", x[mask.any(1)])
d.add("nonzero", torch.nonzero(mask)).add("take", torch.take(x, torch.arange(0, 64000, 7, device="cuda")))
y = x.clone()
y[mask] = -1.0
y[rows[:10], 3] = 42.0
d.add("assign", y)
z = torch.zeros(64, device="cuda")
z.index_put_((perm,), torch.arange(64, device="cuda", dtype=torch.float32))
d.add("index_put", z)
ints = torch.randint(-5, 6, (5000,), device="cuda").float()
tgt = torch.randint(0, 100, (5000,), device="cuda")
d.add("index_add", torch.zeros(100, device="cuda").index_add_(0, tgt, ints))
d.add("scatter_add_i64", torch.zeros(100, device="cuda", dtype=torch.int64).scatter_add_(0, tgt, ints.long()))
d.add("slices", x[5:900:7, -10:].flip(0)).add("roll", torch.roll(x, (3, -5), (0, 1)))
d.add("where1", torch.where(mask)[1])
emit("torch_indexing", d.hexdigest(), notes="sha256 of 16 results")
