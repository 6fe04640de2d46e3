"""Autograd training of a small transformer (embedding, 2 encoder layers with dropout, causal mask, AdamW, gradient clipping), 5 steps, deterministic mode, math attention."""
from _common import Digest, emit, prepare

prepare(cublas=True)
import torch
import torch.nn as nn
from torch.nn.attention import SDPBackend, sdpa_kernel

torch.use_deterministic_algorithms(True)
torch.manual_seed(0)
V, D, T, B = 500, 64, 32, 16


class LM(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(V, D)
        self.pos = nn.Parameter(torch.randn(T, D) * 0.02)
        layer = nn.TransformerEncoderLayer(D, 4, 128, dropout=0.1, batch_first=True, norm_first=True)
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(D, V)

    def forward(self, ids):
        mask = nn.Transformer.generate_square_subsequent_mask(T, device=ids.device)
        return self.head(self.enc(self.emb(ids) + self.pos, mask=mask, is_causal=True))


model = LM().cuda()
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
ids = torch.randint(0, V, (B, T + 1)).cuda()
onehot = torch.eye(V)[ids[:, 1:].cpu()].cuda()
losses = []
with sdpa_kernel(SDPBackend.MATH):
    for _ in range(5):
        opt.zero_grad(set_to_none=True)
        logits = model(ids[:, :-1])
        loss = -(torch.log_softmax(logits, -1) * onehot).sum(-1).mean()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
d = Digest().add("losses", losses)
for name, p in model.named_parameters():
    d.add(name, p)
emit("torch_transformer_train", d.hexdigest(), notes=f"sha256 of losses and parameters; last loss {losses[-1]:.6f}")
