"""PyTorch nn forward ops: embedding, layer/group/batch norm, softmax, cross-entropy, activations, pooling, interpolation, padding."""
from _common import Digest, emit, prepare

prepare(cublas=True)
import torch
import torch.nn.functional as F

torch.manual_seed(0)
d = Digest()
x = torch.randn(8, 16, 32, 32, device="cuda")
emb = torch.randn(1000, 64, device="cuda")
ids = torch.randint(0, 1000, (32, 20), device="cuda")
d.add("embedding", F.embedding(ids, emb))
d.add("layer_norm", F.layer_norm(x, (32,), torch.randn(32, device="cuda"), torch.randn(32, device="cuda")))
d.add("group_norm", F.group_norm(x, 4)).add("batch_norm", F.batch_norm(x, None, None, training=True))
logits = torch.randn(64, 100, device="cuda")
tgt = torch.randint(0, 100, (64,), device="cuda")
d.add("softmax", F.softmax(logits, 1)).add("log_softmax", F.log_softmax(logits, 1))
d.add("cross_entropy", F.cross_entropy(logits, tgt)).add("silu", F.silu(x)).add("mish", F.mish(x))
d.add("max_pool", F.max_pool2d(x, 3, 2, 1)).add("avg_pool", F.avg_pool2d(x, 2))
d.add("adaptive", F.adaptive_avg_pool2d(x, 5)).add("bilinear", F.interpolate(x, scale_factor=1.5, mode="bilinear"))
d.add("nearest", F.interpolate(x, size=(50, 40), mode="nearest")).add("pad", F.pad(x, (1, 2, 3, 4), mode="reflect"))
d.add("unfold", F.unfold(x, 3, padding=1)).add("cosine", F.cosine_similarity(logits[:32], logits[32:]))
emit("torch_nn_layers", d.hexdigest(), notes="sha256 of 17 forward results")
