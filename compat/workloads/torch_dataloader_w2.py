"""DataLoader with pin_memory=True and num_workers=2: batches from a synthetic dataset are pinned (by PyTorch's pinning thread), copied to the GPU without blocking and reduced there."""
from _dataloader import run

run("torch_dataloader_w2", 2)
