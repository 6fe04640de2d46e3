"""PyTorch eager elementwise ops: arithmetic, transcendentals, comparisons, casts, integer and bitwise ops, broadcasting, in-place and strided views."""
from _common import Digest, emit, prepare

prepare()
import torch

torch.manual_seed(0)
d = Digest()
n = 1 << 18
x = torch.linspace(-20, 20, n, device="cuda")
y = torch.arange(n, device="cuda", dtype=torch.float32).remainder(97) / 13 + 0.5
d.add("add", x + y).add("mul", x * y).add("div", x / y).add("pow", y.pow(1.7))
d.add("sin", x.sin()).add("cos", x.cos()).add("tanh", x.tanh()).add("exp", x.clamp(max=10).exp())
d.add("log", y.log()).add("sqrt", y.sqrt()).add("rsqrt", y.rsqrt()).add("erf", x.erf())
d.add("sigmoid", x.sigmoid()).add("gelu", torch.nn.functional.gelu(x)).add("atan2", torch.atan2(x, y))
d.add("where", torch.where(x > 0, x, y)).add("clamp", x.clamp(-3, 3)).add("round", (x * 3.3).round())
d.add("lerp", torch.lerp(x, y, 0.3)).add("addcmul", torch.addcmul(x, x, y, value=0.5))
d.add("cmp", (x > y) | (x == 0)).add("nan", torch.isnan(torch.log(x)))
h = x.half()
d.add("half", (h * h + 1).float()).add("bf16", (x.bfloat16() * 3 - 1).float())
d.add("f64", (x.double().sin() * y.double()).exp2())
i = torch.arange(n, device="cuda", dtype=torch.int64)
d.add("int", (i * 7919) % 10007).add("bits", (i ^ (i >> 3)) & 0xFFF | (i << 2))
d.add("i32", (i.int() * 3 - 5).abs()).add("u8", i.to(torch.uint8) + 200)
m = torch.randn(512, 384, device="cuda")
v = torch.randn(384, device="cuda")
d.add("bcast", m * v + v.sin()).add("strided", m.t()[::3, 1::2].contiguous() * 2)
z = m.clone()
z.mul_(2).add_(1).tanh_()
z[10:20, ::5] = 7.0
d.add("inplace", z)
emit("torch_elementwise", d.hexdigest(), notes="sha256 of 30 results")
