"""torch_decode: greedy decoding with a Llama-style model of about 1.1B parameters (16 layers,
width 2048, 32 heads with 8 key/value heads, RMSNorm, SwiGLU 8192, RoPE, vocabulary 32000,
untied head), random weights from a fixed seed, bf16, static KV cache, batch 1. A 32-token
prompt is prefilled, then each new token is one forward step and one .item() (the one
synchronize per token of a loop that checks for an end token). Reports decode tokens/s and
the sha256 of the generated ids, so outputs can be compared with a native run
(sha256_16: of the first 16 only, for runs cut short by --max-seconds).

--attention picks PyTorch's attention kernels: auto (PyTorch's own choice; on
the H100 with torch 2.11 that is cuDNN, which builds and NVRTC-compiles a new
plan for every new key length, i.e. every token, natively too) or one family
(flash, efficient, math, cudnn)."""

import contextlib

import hashlib

import torch
import torch.nn as nn
import torch.nn.functional as F

from benchlib import emit, median, now, parser, sync, thread_usage, usage_fields


def rms_norm(x, w, eps=1e-5):
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * w


class Layer(nn.Module):
    def __init__(self, dim, heads, kv_heads, ffn, dev, dt):
        super().__init__()
        hd = dim // heads
        self.heads, self.kv_heads, self.hd = heads, kv_heads, hd

        def lin(o, i):
            return nn.Parameter(torch.empty(o, i, device=dev, dtype=dt).normal_(std=0.02))

        self.wq, self.wk, self.wv = lin(heads * hd, dim), lin(kv_heads * hd, dim), lin(kv_heads * hd, dim)
        self.wo = lin(dim, heads * hd)
        self.w1, self.w3, self.w2 = lin(ffn, dim), lin(ffn, dim), lin(dim, ffn)
        self.n1 = nn.Parameter(torch.ones(dim, device=dev, dtype=dt))
        self.n2 = nn.Parameter(torch.ones(dim, device=dev, dtype=dt))

    def forward(self, x, pos, cos, sin, ck, cv):
        b, t, _ = x.shape
        a = rms_norm(x, self.n1)
        q = F.linear(a, self.wq).view(b, t, self.heads, self.hd).transpose(1, 2)
        k = F.linear(a, self.wk).view(b, t, self.kv_heads, self.hd).transpose(1, 2)
        v = F.linear(a, self.wv).view(b, t, self.kv_heads, self.hd).transpose(1, 2)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        ck[:, :, pos:pos + t] = k
        cv[:, :, pos:pos + t] = v
        keys, vals = ck[:, :, :pos + t], cv[:, :, :pos + t]
        # GQA: repeat the key/value heads (works on any torch version)
        rep = self.heads // self.kv_heads
        keys, vals = keys.repeat_interleave(rep, dim=1), vals.repeat_interleave(rep, dim=1)
        o = F.scaled_dot_product_attention(q, keys, vals, is_causal=t > 1)
        x = x + F.linear(o.transpose(1, 2).reshape(b, t, -1), self.wo)
        m = rms_norm(x, self.n2)
        return x + F.linear(F.silu(F.linear(m, self.w1)) * F.linear(m, self.w3), self.w2)


def rope(x, cos, sin):
    x1, x2 = x[..., 0::2], x[..., 1::2]
    return torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)


class Llama(nn.Module):
    def __init__(self, a, dev, dt):
        super().__init__()
        self.emb = nn.Parameter(torch.empty(a.vocab, a.dim, device=dev, dtype=dt).normal_(std=0.02))
        self.layers = nn.ModuleList(Layer(a.dim, a.heads, a.kv_heads, a.ffn, dev, dt) for _ in range(a.layers))
        self.norm = nn.Parameter(torch.ones(a.dim, device=dev, dtype=dt))
        self.head = nn.Parameter(torch.empty(a.vocab, a.dim, device=dev, dtype=dt).normal_(std=0.02))
        hd = a.dim // a.heads
        inv = 1.0 / (10000.0 ** (torch.arange(0, hd, 2, device=dev, dtype=torch.float32) / hd))
        ang = torch.outer(torch.arange(a.max_len, device=dev, dtype=torch.float32), inv)
        self.cos, self.sin = ang.cos().to(dt), ang.sin().to(dt)
        shape = (a.layers, 1, a.kv_heads, a.max_len, hd)
        self.ck = torch.zeros(shape, device=dev, dtype=dt)
        self.cv = torch.zeros(shape, device=dev, dtype=dt)

    @torch.no_grad()
    def forward(self, ids, pos):
        t = ids.shape[1]
        x = F.embedding(ids, self.emb)
        cos, sin = self.cos[pos:pos + t].view(1, 1, t, -1), self.sin[pos:pos + t].view(1, 1, t, -1)
        for i, layer in enumerate(self.layers):
            x = layer(x, pos, cos, sin, self.ck[i], self.cv[i])
        return F.linear(rms_norm(x[:, -1:], self.norm), self.head)


def main():
    p = parser(__doc__)
    p.add_argument("--tokens", type=int, default=256)
    p.add_argument("--prompt", type=int, default=32)
    p.add_argument("--warmup", type=int, default=4, help="tokens decoded (and discarded) before timing")
    p.add_argument("--layers", type=int, default=16)
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--kv-heads", type=int, default=8)
    p.add_argument("--ffn", type=int, default=8192)
    p.add_argument("--vocab", type=int, default=32000)
    p.add_argument("--attention", default="auto", choices=["auto", "flash", "efficient", "math", "cudnn"])
    p.add_argument("--ids", metavar="FILE", help="also write the generated token ids there, one per line")
    a = p.parse_args()
    dev, dt = a.device, torch.bfloat16
    want = a.exact if a.exact >= 0 else a.tokens
    a.max_len = a.prompt + max(a.warmup, want) + 1
    torch.manual_seed(0)
    model = Llama(a, dev, dt)
    gen = torch.Generator(device=dev).manual_seed(1)
    prompt = torch.randint(0, a.vocab, (1, a.prompt), device=dev, generator=gen)

    def generate(n, budget=None):
        """Prefill, then n greedy tokens; returns ids and per-token times."""
        first = model(prompt, 0).argmax(-1)
        ids, times = [int(first.item())], []
        tok = first
        t0 = now()
        for i in range(n):
            t = now()
            tok = model(tok, a.prompt + i).argmax(-1)
            ids.append(int(tok.item()))
            times.append(now() - t)
            if budget is not None and i + 1 >= 16 and now() - t0 > budget:
                break
        return ids, times

    if a.attention != "auto":
        from torch.nn.attention import SDPBackend, sdpa_kernel
        pick = {"flash": SDPBackend.FLASH_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
                "math": SDPBackend.MATH, "cudnn": SDPBackend.CUDNN_ATTENTION}[a.attention]
        attention = sdpa_kernel([pick])
    else:
        attention = contextlib.nullcontext()
    with attention:
        run(a, model, prompt, want, generate)


def run(a, model, prompt, want, generate):
    dev = a.device
    generate(a.warmup)  # warm-up: every kernel and the cache shapes once
    sync(torch, dev)
    t0, u0 = now(), thread_usage()
    ids, times = generate(want, None if a.exact >= 0 else a.max_seconds)
    total, u1 = now() - t0, thread_usage()
    if a.exact >= 0:
        emit("torch_decode", exact=len(times), seconds=total)
        return
    if a.ids:
        with open(a.ids, "w") as f:
            f.write("".join(f"{i}\n" for i in ids))
    text = ",".join(map(str, ids)).encode()
    emit("torch_decode", tokens=len(times), tokens_per_s=len(times) / sum(times),
         median_token_ms=median(times) * 1e3, prefill_and_decode_s=total,
         sha256=hashlib.sha256(text).hexdigest(),
         sha256_16=hashlib.sha256(",".join(map(str, ids[:17])).encode()).hexdigest() if len(ids) > 16 else None,
         params=sum(p.numel() for p in model.parameters()), app_syncs_per_token=1, attention=a.attention,
         **usage_fields(u0, u1, len(times), "token"))


if __name__ == "__main__":
    main()
