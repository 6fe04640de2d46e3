"""cuBLAS through PyTorch, bf16: mm, transposed operands, odd sizes, bmm, addmm with bias (cuBLASLt epilogue), linear, mv, baddbmm, 4-D matmul."""
from _matmul import run

run("bf16")
