"""Environment for the JAX workloads; import before jax."""
import os

os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
os.environ["XLA_PYTHON_CLIENT_MEM_FRACTION"] = "0.05"
os.environ["JAX_PLATFORMS"] = "cuda"  # fail rather than fall back to the CPU
