"""cuFFT through torch.fft: fft/ifft (complex64, complex128), rfft/irfft, fft2, rfftn/irfftn, power-of-two, odd and prime sizes, batched, normalisations."""
from _common import Digest, emit, prepare

prepare()
import torch

torch.manual_seed(0)
d = Digest()
x = torch.randn(64, 1024, device="cuda")
c = torch.randn(32, 1000, device="cuda", dtype=torch.complex64)
d.add("rfft", torch.fft.rfft(x)).add("irfft", torch.fft.irfft(torch.fft.rfft(x), n=1024))
d.add("fft_c64", torch.fft.fft(c)).add("ifft_ortho", torch.fft.ifft(c, norm="ortho"))
d.add("prime", torch.fft.fft(torch.randn(16, 997, device="cuda"))).add("fft_c128", torch.fft.fft(c.to(torch.complex128)))
img = torch.randn(8, 3, 96, 80, device="cuda")
d.add("fft2", torch.fft.fft2(img)).add("rfftn", torch.fft.rfftn(img, dim=(1, 2, 3)))
d.add("irfftn", torch.fft.irfftn(torch.fft.rfftn(img, dim=(2, 3)), s=(96, 80), dim=(2, 3)))
d.add("shift", torch.fft.fftshift(torch.fft.fftfreq(101, device="cuda")))
d.add("half", torch.fft.fft(torch.randn(4, 256, device="cuda").half()))
emit("torch_fft", d.hexdigest(), notes="sha256 of 11 transforms")
