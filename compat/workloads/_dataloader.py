"""The body of the torch_dataloader_* workloads: a pinned-memory DataLoader feeding the GPU."""
from _common import Digest, emit, prepare

prepare()
import torch
from torch.utils.data import DataLoader, Dataset


class Synthetic(Dataset):
    def __len__(self):
        return 400

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(i)
        return torch.randn(3, 32, 32, generator=g), i % 10


def run(name, workers):
    torch.cuda.init()
    torch.manual_seed(0)
    w = torch.randn(3 * 32 * 32, 10, device="cuda")
    loader = DataLoader(Synthetic(), batch_size=32, shuffle=True, num_workers=workers, pin_memory=True,
                        generator=torch.Generator().manual_seed(0))
    d = Digest()
    pinned = []
    for xb, yb in loader:
        pinned.append(xb.is_pinned() and yb.is_pinned())
        xb, yb = xb.cuda(non_blocking=True), yb.cuda(non_blocking=True)
        d.add("logits", xb.flatten(1) @ w).add("labels", yb)
    torch.cuda.synchronize()
    d.add("pinned", pinned)
    emit(name, d.hexdigest(), notes=f"{len(pinned)} batches, all pinned: {all(pinned)}")
