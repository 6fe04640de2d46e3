"""cuDNN through PyTorch: conv1d/2d/3d, strided, dilated, grouped and depthwise, transposed, fp16 channels-last; forward and backward (input, weight and bias gradients); deterministic algorithms, no benchmarking."""
from _common import Digest, emit, prepare

prepare(cublas=True)
import torch
import torch.nn.functional as F

torch.use_deterministic_algorithms(True)
torch.backends.cudnn.benchmark = False
torch.manual_seed(0)
d = Digest()


def case(label, fn, x, *params):
    x = x.detach().requires_grad_(True)
    params = [p.detach().requires_grad_(True) for p in params]
    y = fn(x, *params)
    (y.float() * torch.linspace(-1, 1, y.numel(), device="cuda").view_as(y)).sum().backward()
    d.add(label + ".y", y).add(label + ".dx", x.grad)
    for i, p in enumerate(params):
        d.add(f"{label}.dp{i}", p.grad)


r = lambda *s: torch.randn(*s, device="cuda")  # noqa: E731
case("conv2d", lambda x, w, b: F.conv2d(x, w, b, padding=1), r(8, 3, 64, 64), r(16, 3, 3, 3), r(16))
case("strided", lambda x, w: F.conv2d(x, w, stride=2, dilation=2), r(4, 16, 33, 47), r(32, 16, 3, 3))
case("grouped", lambda x, w: F.conv2d(x, w, groups=4, padding=2), r(4, 32, 28, 28), r(64, 8, 5, 5))
case("depthwise", lambda x, w: F.conv2d(x, w, groups=32, padding=1), r(4, 32, 28, 28), r(32, 1, 3, 3))
case("conv1d", lambda x, w, b: F.conv1d(x, w, b, padding=3), r(8, 12, 200), r(24, 12, 7), r(24))
case("conv3d", lambda x, w: F.conv3d(x, w, padding=1), r(2, 4, 12, 16, 16), r(8, 4, 3, 3, 3))
case("transpose", lambda x, w: F.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1), r(4, 16, 20, 20), r(16, 8, 3, 3))
xh = r(8, 32, 56, 56).half().to(memory_format=torch.channels_last)
wh = r(64, 32, 3, 3).half().to(memory_format=torch.channels_last)
case("fp16_nhwc", lambda x, w: F.conv2d(x, w, padding=1), xh, wh)
emit("torch_conv_cudnn", d.hexdigest(), notes=f"cuDNN {torch.backends.cudnn.version()}; sha256 of outputs and gradients of 8 convolutions")
