"""Selftest: equal values but a different 'same' field (e.g. JAX fell back to the CPU): a FAIL."""
# compat: expect=FAIL
from _selftest import REMOTE, emit

emit("selftest_same_differs", "d", tolerance="rtol=0 atol=0", values=[1.0], same={"platform": "cpu" if REMOTE else "gpu"})
