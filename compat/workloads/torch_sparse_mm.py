"""cuSPARSE through torch.sparse: COO and CSR matrix times dense (SpMM), sparse times sparse (SpGEMM), sparse matrix-vector, addmm."""
from _common import Digest, emit, prepare, values_of

prepare()
import torch

torch.manual_seed(0)
M, K, N, nnz = 512, 384, 256, 6000
flat = torch.randperm(M * K, device="cuda")[:nnz].sort().values
idx = torch.stack([flat // K, flat % K])
coo = torch.sparse_coo_tensor(idx, torch.randn(nnz, device="cuda"), (M, K)).coalesce()
csr = coo.to_sparse_csr()
dense = torch.randn(K, N, device="cuda")
vec = torch.randn(K, 1, device="cuda")
results = {
    "coo_mm": torch.sparse.mm(coo, dense),
    "csr_mm": csr @ dense,
    "csr_mv": csr @ vec,
    "addmm": torch.addmm(torch.randn(M, N, device="cuda"), csr, dense, beta=0.5, alpha=2.0),
    "spgemm": torch.sparse.mm(coo, torch.sparse_coo_tensor(idx.flip(0), torch.ones(nnz, device="cuda"), (K, M)).coalesce()).to_dense()[:, :N],
}
d = Digest()
vals = []
for k, t in results.items():
    d.add(k, t)
    vals += values_of(t.sum(1)[:128]) + values_of(t.flatten()[:64])
emit("torch_sparse_mm", d.hexdigest(), tolerance="rtol=1e-6 atol=1e-6", values=vals, rtol=1e-6, atol=1e-6,
     notes="cuSPARSE may sum in a different order between runs: compared within tolerance on row sums and 64 entries of each result")
