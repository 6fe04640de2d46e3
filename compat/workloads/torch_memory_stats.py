"""torch.cuda memory accounting: memory_allocated/reserved, max_memory_allocated and reset, memory_stats counters, mem_get_info, device properties; exact counters must equal the native run's."""
from _common import Digest, emit, prepare

prepare()
import torch

d = Digest()
props = torch.cuda.get_device_properties(0)
d.add("props", [props.name, props.total_memory, props.multi_processor_count, props.major, props.minor])
d.add("count", torch.cuda.device_count()).add("capability", list(torch.cuda.get_device_capability(0)))
base = torch.cuda.memory_allocated()
a = torch.empty(1 << 20, device="cuda")              # 4 MiB
b = torch.empty(1000, device="cuda")                  # rounded to 512-byte blocks
c = torch.empty(3 << 20, dtype=torch.float16, device="cuda")
after = torch.cuda.memory_allocated() - base
peak1 = torch.cuda.max_memory_allocated()
del a, c
torch.cuda.reset_peak_memory_stats()
peak2 = torch.cuda.max_memory_allocated()
st = torch.cuda.memory_stats()
keys = ["allocation.all.current", "allocation.all.allocated", "allocation.all.freed", "allocated_bytes.all.current",
        "allocated_bytes.all.peak", "segment.all.current", "reserved_bytes.all.current", "active_bytes.all.current",
        "num_alloc_retries", "num_ooms", "allocated_bytes.small_pool.current", "allocated_bytes.large_pool.allocated"]
d.add("stats", {k: st.get(k) for k in keys}).add("allocated", [after, peak1, peak2])
free, total = torch.cuda.mem_get_info()
flags = [0 < free <= total, total == props.total_memory, torch.cuda.memory_reserved() >= torch.cuda.memory_allocated()]
d.add("flags", flags)
summary = torch.cuda.memory_summary()
d.add("summary_ok", "Allocated memory" in summary)
emit("torch_memory_stats", d.hexdigest(), notes=f"{props.name}; allocated {after} bytes; checks {flags}")
