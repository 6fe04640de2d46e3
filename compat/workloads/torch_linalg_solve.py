"""cuSOLVER through torch.linalg in float64: solve, inv, det/slogdet, cholesky, qr, lstsq, lu_factor; compared within a tolerance."""
from _common import Digest, emit, prepare, values_of

prepare(cublas=True)
import torch

torch.manual_seed(0)
n = 256
A = torch.randn(n, n, device="cuda", dtype=torch.float64) + n ** 0.5 * torch.eye(n, device="cuda", dtype=torch.float64)
B = torch.randn(n, 8, device="cuda", dtype=torch.float64)
S = A @ A.T + torch.eye(n, device="cuda", dtype=torch.float64)
X = torch.linalg.solve(A, B)
inv = torch.linalg.inv(A)
sign, logdet = torch.linalg.slogdet(A)
L = torch.linalg.cholesky(S)
Q, R = torch.linalg.qr(A)
ls = torch.linalg.lstsq(torch.randn(300, 40, device="cuda", dtype=torch.float64), torch.randn(300, 3, device="cuda", dtype=torch.float64)).solution
LU, piv = torch.linalg.lu_factor(A)
resid = float(torch.linalg.matrix_norm(A @ X - B) / torch.linalg.matrix_norm(B))
d = Digest()
for k, t in (("X", X), ("inv", inv), ("logdet", logdet), ("L", L), ("R", R), ("lstsq", ls), ("LU", LU), ("piv", piv)):
    d.add(k, t)
vals = (values_of(X) + values_of(inv.diagonal()) + values_of(sign) + values_of(logdet) + values_of(L.diagonal())
        + values_of(R.diagonal().abs()) + values_of(ls) + values_of(LU.diagonal().abs()) + [float(resid < 1e-12)])
emit("torch_linalg_solve", d.hexdigest(), tolerance="rtol=1e-9 atol=1e-12", values=vals, rtol=1e-9, atol=1e-12,
     notes=f"float64; cuSOLVER may choose algorithms per run: compared within tolerance; residual {resid:.1e}")
