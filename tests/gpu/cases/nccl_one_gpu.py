"""NCCL on the one GPU a one-GPU machine has (issue 19, what it can show
before a multi-GPU kind is lent): a torch.distributed process group of one
rank on the NCCL backend (init, all-reduce, broadcast, all-gather, a barrier),
a DistributedDataParallel training step, and torch.cuda.nccl's in-process
all-reduce. NCCL's init starts its proxy thread and maps host memory the GPU
polls, which a client reaches through gpuwire's mapped memory; one rank has
no transport between GPUs, so P2P and SHM are not exercised here. Results
digested; gpu-check compares them with the native run's line by line."""
import hashlib
import os
import socket

import torch
import torch.distributed as dist


def digest(t):
    return hashlib.sha256(t.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:24]


with socket.socket() as s:  # a free port for the rendezvous
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
torch.cuda.set_device(0)
dist.init_process_group("nccl", rank=0, world_size=1, device_id=torch.device("cuda", 0))
print("backend", dist.get_backend(), "world", dist.get_world_size(), "nccl", torch.cuda.nccl.version())

torch.manual_seed(0)
x = torch.randn(1 << 20, device="cuda")
y = x.clone()
dist.all_reduce(y)
print("all_reduce", digest(y), bool(torch.equal(x, y)))
b = torch.arange(4096, device="cuda", dtype=torch.float32)
dist.broadcast(b, src=0)
print("broadcast", digest(b))
parts = [torch.empty(1024, device="cuda")]
dist.all_gather(parts, x[:1024])
print("all_gather", digest(parts[0]))
dist.barrier()

model = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.ReLU(), torch.nn.Linear(512, 10)).cuda()
ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[0])
opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
inp = torch.randn(64, 256, device="cuda")
target = torch.randint(0, 10, (64,), device="cuda")
for step in range(3):
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(ddp(inp), target)
    loss.backward()
    opt.step()
    print("ddp step", step, f"{loss.item():.6f}")
print("ddp weights", digest(torch.cat([p.flatten() for p in model.parameters()])))
dist.destroy_process_group()

t = [torch.ones(1000, device="cuda") * 3]
torch.cuda.nccl.all_reduce(t)
torch.cuda.synchronize()
print("nccl.all_reduce", digest(t[0]), float(t[0].sum()))
print("PASS nccl_one_gpu")
