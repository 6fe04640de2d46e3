"""PyTorch's allocator with PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True (virtual memory: reserve, map, unmap): growing and shrinking allocations, empty_cache, reuse, results checked."""
import os

os.environ["PYTORCH_CUDA_ALLOC_CONF"] = "expandable_segments:True"
from _common import Digest, emit, prepare  # noqa: E402

prepare()
import torch  # noqa: E402

torch.manual_seed(0)
d = Digest()
keep = []
for mib in (1, 3, 17, 64, 200, 512):
    t = torch.full((mib << 18,), float(mib), device="cuda")
    t[::4097] += torch.arange(t[::4097].numel(), device="cuda", dtype=torch.float32)
    keep.append(t)
d.add("sums", [float(t.double().sum()) for t in keep])
reserved_full = torch.cuda.memory_reserved()
del keep[1::2]
torch.cuda.empty_cache()
reserved_after = torch.cuda.memory_reserved()
more = [torch.randn(n << 18, device="cuda") for n in (5, 100, 300)]
d.add("more", [float(t.double().sum()) for t in more])
big = torch.cat([t[:1 << 20] for t in keep + more])
d.add("big", big)
st = torch.cuda.memory_stats()
flags = [reserved_full >= (1 + 3 + 17 + 64 + 200 + 512) << 20, reserved_after < reserved_full,
         st.get("num_alloc_retries", 0) == 0, st.get("num_ooms", 0) == 0,
         torch.cuda.memory_allocated() <= torch.cuda.memory_reserved()]
d.add("flags", flags)
emit("torch_expandable_segments", d.hexdigest(),
     notes=f"reserved {reserved_full >> 20} MiB, {reserved_after >> 20} MiB after empty_cache; checks {flags}")
