"""Automatic mixed precision: fp16 autocast with GradScaler (including a step whose gradients overflow and is skipped), then bf16 autocast; 6 training steps, deterministic mode."""
from _common import Digest, emit, prepare

prepare(cublas=True)
import torch
import torch.nn as nn

torch.use_deterministic_algorithms(True)
torch.backends.cudnn.benchmark = False
torch.manual_seed(0)
model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
                      nn.Linear(8 * 16 * 16, 128), nn.GELU(), nn.LayerNorm(128), nn.Linear(128, 4)).cuda()
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
scaler = torch.amp.GradScaler("cuda", init_scale=2.0 ** 16)
x = torch.randn(32, 3, 16, 16, device="cuda")
y = torch.randn(32, 4, device="cuda")
losses, scales = [], []
for step in range(6):
    opt.zero_grad(set_to_none=True)
    with torch.autocast("cuda", dtype=torch.float16):
        out = model(x)
        loss = torch.nn.functional.mse_loss(out.float(), y)
    # step 2 overflows on purpose: the scaler must skip it and halve its scale
    scaler.scale(loss * (1e30 if step == 2 else 1.0)).backward()
    scaler.step(opt)
    scaler.update()
    losses.append(loss.item())
    scales.append(scaler.get_scale())
with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
    bf = model(x)
d = Digest().add("losses", losses).add("scales", scales).add("bf16_out", bf).add("bf16_dtype", str(bf.dtype))
for name, p in model.named_parameters():
    d.add(name, p)
emit("torch_amp", d.hexdigest(), notes=f"sha256 of losses, scales {scales[0]:.0f}->{scales[-1]:.0f}, parameters, bf16 output")
