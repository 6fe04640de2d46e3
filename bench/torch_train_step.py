"""torch_train_step: one training step of a GPT-2-small-sized decoder (12 layers, width 768,
12 heads, vocabulary 50257, sequence 512, batch 8), AdamW, bf16 autocast, written with
torch.nn only (random data, fixed seed, nothing downloaded). A step is zero_grad, forward,
cross-entropy, backward, optimizer step and loss.item() (the one synchronize a training loop
that logs its loss makes). Reports the median step time after warm-up."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from benchlib import emit, median, now, parser, sync


class Block(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, 4 * dim)
        self.out = nn.Linear(4 * dim, dim)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
        return x + self.out(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, vocab: int, seq: int, dim: int, layers: int, heads: int):
        super().__init__()
        self.wte = nn.Embedding(vocab, dim)
        self.wpe = nn.Embedding(seq, dim)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.wte.weight  # tied, as GPT-2
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * layers) if name.endswith(("proj.weight", "out.weight")) else 0.02
                nn.init.normal_(p, std=std)

    def forward(self, idx):
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln_f(x))


def main():
    p = parser(__doc__)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--vocab", type=int, default=50257)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--batch", type=int, default=8)
    args = p.parse_args()
    dev = args.device
    torch.manual_seed(0)
    model = GPT(args.vocab, args.seq, args.dim, args.layers, args.heads).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.1)
    gen = torch.Generator(device=dev).manual_seed(1)
    data = torch.randint(0, args.vocab, (args.batch, args.seq + 1), device=dev, generator=gen)
    x, y = data[:, :-1], data[:, 1:]

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=dev.split(":")[0], dtype=torch.bfloat16):
            logits = model(x)
        loss = F.cross_entropy(logits.float().view(-1, args.vocab), y.reshape(-1))
        loss.backward()
        opt.step()
        return loss.item()

    for _ in range(args.warmup):
        step()
    sync(torch, dev)

    steps = args.exact if args.exact >= 0 else args.steps
    times, loss = [], None
    t0 = now()
    while len(times) < steps:
        t = now()
        loss = step()
        times.append(now() - t)
        if args.exact < 0 and len(times) >= 2 and now() - t0 > args.max_seconds:
            break
    if args.exact >= 0:
        emit("torch_train_step", exact=len(times), seconds=now() - t0)
        return
    ms = median(times) * 1e3
    emit("torch_train_step", steps=len(times), median_step_ms=ms, mean_step_ms=sum(times) / len(times) * 1e3,
         tokens_per_s=args.batch * args.seq / (ms / 1e3), final_loss=loss,
         params=sum(p.numel() for p in model.parameters()), app_syncs_per_step=1)


if __name__ == "__main__":
    main()
