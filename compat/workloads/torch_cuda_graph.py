"""CUDA graphs from PyTorch: capture an MLP forward (with dropout, so graph-safe RNG) on a side stream, replay with new inputs, compare with eager; make_graphed_callables for a module trained 3 steps."""
from _common import Digest, emit, prepare

prepare(cublas=True)
import torch
import torch.nn as nn

torch.manual_seed(0)
model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Dropout(0.2), nn.Linear(128, 10)).cuda()
static_in = torch.randn(32, 64, device="cuda")
s = torch.cuda.Stream()
s.wait_stream(torch.cuda.current_stream())
with torch.cuda.stream(s):
    for _ in range(3):
        model(static_in)
torch.cuda.current_stream().wait_stream(s)
g = torch.cuda.CUDAGraph()
with torch.cuda.graph(g):
    static_out = model(static_in)
d = Digest()
model.eval()
agree = []
for i in range(5):
    static_in.copy_(torch.randn(32, 64, device="cuda"))
    g.replay()
    d.add(f"replay{i}", static_out)
    agree.append(static_out.ne(0).sum().item())
d.add("nonzeros", agree)
model.train()

net = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 1)).cuda()
opt = torch.optim.SGD(net.parameters(), lr=0.1)
sample = torch.randn(8, 16, device="cuda")
gnet = torch.cuda.make_graphed_callables(net, (sample,))
for step in range(3):
    xb = torch.randn(8, 16, device="cuda")
    opt.zero_grad(set_to_none=True)
    loss = gnet(xb).pow(2).mean()
    loss.backward()
    opt.step()
    d.add(f"loss{step}", loss)
for name, p in net.named_parameters():
    d.add(name, p)
g.reset()
emit("torch_cuda_graph", d.hexdigest(), notes="sha256 of 5 replays and a graphed training run")
