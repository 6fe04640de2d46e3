"""Selftest: a value off by 1e-3 relative through gpuwire, tolerance rtol=1e-6: a FAIL that names the value."""
# compat: expect=FAIL
from _selftest import REMOTE, emit

vals = [1.0, 2.0 * (1.001 if REMOTE else 1.0)]
emit("selftest_out_of_tolerance", "d", tolerance="rtol=1e-6 atol=0", values=vals, rtol=1e-6, atol=0.0)
