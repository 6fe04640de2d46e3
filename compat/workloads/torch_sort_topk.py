"""PyTorch sort (stable and default, 1-D and segmented), argsort, topk, kthvalue, unique with counts, median."""
from _common import Digest, emit, prepare

prepare()
import torch

torch.manual_seed(0)
d = Digest()
x = torch.randn(1 << 20, device="cuda")
dup = torch.randint(0, 1000, (200000,), device="cuda")
m = torch.randn(300, 1000, device="cuda")
v, i = torch.sort(x)
d.add("sort_v", v).add("sort_i", i)
v, i = torch.sort(dup, stable=True, descending=True)
d.add("stable_v", v).add("stable_i", i)
v, i = m.sort(1)
d.add("seg_v", v).add("seg_i", i).add("argsort", torch.argsort(m, 0))
v, i = torch.topk(x, 100)
d.add("topk_v", v).add("topk_i", i)
v, i = m.topk(7, dim=1, largest=False)
d.add("topk_small_v", v).add("topk_small_i", i)
d.add("kth", m.kthvalue(10, 1).values).add("median", m.median(1).values)
u, c = torch.unique(dup, return_counts=True)
d.add("unique", u).add("counts", c)
emit("torch_sort_topk", d.hexdigest(), notes="sha256 of 15 results")
