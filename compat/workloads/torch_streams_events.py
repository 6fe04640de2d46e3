"""Several CUDA streams (one with high priority) and events from PyTorch: cross-stream waits, wait_stream, record_stream, non-blocking pinned copies both ways, event query/synchronize and timing."""
from _common import Digest, emit, prepare

prepare(cublas=True)
import torch

torch.manual_seed(0)
d = Digest()
s1 = torch.cuda.Stream()
s2 = torch.cuda.Stream(priority=-1)
start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
host = torch.arange(1 << 20, dtype=torch.float32).pin_memory()
x = torch.randn(1024, 1024, device="cuda")
start.record()
with torch.cuda.stream(s1):
    dev = host.to("cuda", non_blocking=True)
    a = (x * 2).sin() + dev.view(1024, 1024) / 1e6
    ev1 = torch.cuda.Event()
    ev1.record(s1)
with torch.cuda.stream(s2):
    s2.wait_event(ev1)
    b = a @ a.T
    a.record_stream(s2)
    ev2 = s2.record_event()
torch.cuda.current_stream().wait_stream(s2)
c = b.sum(0)
back = torch.empty(1024, pin_memory=True)
back.copy_(c, non_blocking=True)
end.record()
end.synchronize()
ms = start.elapsed_time(end)
outs = []
for i in range(4):  # a pipeline over two streams, joined by events
    s = s1 if i % 2 else s2
    with torch.cuda.stream(s):
        outs.append((x[i * 256:(i + 1) * 256] ** 2).cumsum(1))
torch.cuda.synchronize()
d.add("a", a).add("b", b).add("back", back).add("pipeline", torch.cat(outs))
d.add("flags", [ev1.query(), ev2.query(), s1.query(), s2.query(), end.query(), ms > 0, torch.equal(back, c.cpu())])
d.add("priority", [s2.priority, s1.priority])
emit("torch_streams_events", d.hexdigest(), notes=f"sha256 of results and event/stream states; event timing {ms:.2f} ms (not compared)")
