"""cuFFT through CuPy: fft/ifft, rfft/irfft, fft2, rfftn on power-of-two, odd and prime sizes, complex64 and complex128."""
from _common import Digest, emit, prepare

prepare(caches=True)
import cupy as cp

rs = cp.random.RandomState(2)
x = rs.standard_normal((64, 1024), dtype=cp.float32)
c = (rs.standard_normal((16, 1000)) + 1j * rs.standard_normal((16, 1000))).astype(cp.complex64)
img = rs.standard_normal((4, 96, 80), dtype=cp.float32)
d = Digest().add("rfft", cp.fft.rfft(x)).add("irfft", cp.fft.irfft(cp.fft.rfft(x), n=1024))
d.add("fft", cp.fft.fft(c)).add("ifft", cp.fft.ifft(c, norm="ortho")).add("prime", cp.fft.fft(x[:, :997]))
d.add("fft2", cp.fft.fft2(img)).add("rfftn", cp.fft.rfftn(img)).add("c128", cp.fft.fft(c.astype(cp.complex128)))
emit("cupy_cufft", d.hexdigest(), notes=f"cupy {cp.__version__}; sha256 of 8 transforms")
