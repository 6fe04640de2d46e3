"""PyTorch random numbers with fixed seeds (Philox): rand, randn, randint, randperm, bernoulli, normal_, exponential_, multinomial, dropout, a private generator, RNG state replay."""
from _common import Digest, emit, prepare

prepare()
import torch

torch.manual_seed(1234)
d = Digest()
d.add("rand", torch.rand(100000, device="cuda")).add("randn", torch.randn(333, 77, device="cuda"))
d.add("randint", torch.randint(0, 1 << 30, (50000,), device="cuda"))
d.add("randperm", torch.randperm(5000, device="cuda")).add("randperm_big", torch.randperm(300000, device="cuda"))
p = torch.rand(10000, device="cuda")
d.add("bernoulli", torch.bernoulli(p)).add("normal", torch.empty(10000, device="cuda").normal_(2, 3))
d.add("exponential", torch.empty(10000, device="cuda").exponential_())
w = torch.rand(20, 100, device="cuda")
d.add("multinomial", torch.multinomial(w, 10)).add("multinomial_repl", torch.multinomial(w, 500, replacement=True))
d.add("dropout", torch.nn.functional.dropout(torch.ones(1000, 100, device="cuda"), 0.3, training=True))
g = torch.Generator(device="cuda").manual_seed(7)
d.add("gen", torch.randn(1000, device="cuda", generator=g))
state = torch.cuda.get_rng_state()
a = torch.rand(1000, device="cuda")
torch.cuda.set_rng_state(state)
b = torch.rand(1000, device="cuda")
d.add("replay_equal", bool(torch.equal(a, b)))
emit("torch_random", d.hexdigest(), notes="sha256 of 14 results")
