"""Autograd training of a small CNN (conv, batch norm, max pool, linear; SGD with momentum), 6 steps under torch.use_deterministic_algorithms(True)."""
from _common import Digest, emit, prepare

prepare(cublas=True)
import torch
import torch.nn as nn

torch.use_deterministic_algorithms(True)
torch.backends.cudnn.benchmark = False
torch.manual_seed(0)
model = nn.Sequential(
    nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.AvgPool2d(2),
    nn.Flatten(), nn.Linear(32 * 8 * 8, 64), nn.ReLU(), nn.Linear(64, 10)).cuda()
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
x = torch.randn(64, 3, 32, 32, device="cuda")
# One-hot targets built on the host: a loss made of log_softmax and a product
# avoids ops that have no deterministic CUDA implementation.
onehot = torch.eye(10)[torch.randint(0, 10, (64,))].cuda()
losses = []
for _ in range(6):
    opt.zero_grad(set_to_none=True)
    loss = -(torch.log_softmax(model(x), 1) * onehot).sum(1).mean()
    loss.backward()
    opt.step()
    losses.append(loss.item())
d = Digest().add("losses", losses)
for name, p in model.named_parameters():
    d.add(name, p)
for name, b in model.named_buffers():
    d.add(name, b)
emit("torch_cnn_train", d.hexdigest(), notes=f"sha256 of losses, parameters, buffers; last loss {losses[-1]:.6f}")
