"""cuBLAS through PyTorch, tf32: mm, transposed operands, odd sizes, bmm, addmm with bias (cuBLASLt epilogue), linear, mv, baddbmm, 4-D matmul."""
from _matmul import run

run("tf32")
