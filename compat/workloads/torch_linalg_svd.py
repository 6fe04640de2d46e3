"""cuSOLVER SVD and symmetric eigendecomposition through torch.linalg (float64, single and batched): singular values and eigenvalues within a tolerance, reconstruction and orthogonality checked."""
from _common import Digest, emit, prepare, values_of

prepare(cublas=True)
import torch

torch.manual_seed(0)
f64 = dict(device="cuda", dtype=torch.float64)
A = torch.randn(200, 120, **f64)
U, S, Vh = torch.linalg.svd(A, full_matrices=False)
recon = float((U @ torch.diag(S) @ Vh - A).abs().max())
orth = float((U.T @ U - torch.eye(120, **f64)).abs().max())
batch = torch.randn(8, 16, 16, **f64)
Sb = torch.linalg.svdvals(batch)
sym = torch.randn(128, 128, **f64)
sym = sym + sym.T
w, V = torch.linalg.eigh(sym)
eig_recon = float((V @ torch.diag(w) @ V.T - sym).abs().max())
d = Digest().add("S", S).add("U", U).add("Vh", Vh).add("Sb", Sb).add("w", w).add("V", V)
ok = [float(recon < 1e-10), float(orth < 1e-10), float(eig_recon < 1e-10)]
vals = values_of(S) + values_of(Sb) + values_of(w) + ok
emit("torch_linalg_svd", d.hexdigest(), tolerance="rtol=1e-9 atol=1e-12", values=vals, rtol=1e-9, atol=1e-12,
     notes=f"float64; singular vectors have sign freedom and cuSOLVER may pick algorithms per run, so values are "
           f"compared within tolerance (reconstruction {recon:.1e}, orthogonality {orth:.1e})")
