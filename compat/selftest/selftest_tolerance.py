"""Selftest: values differ by 1e-9 relative through gpuwire, within rtol=1e-6: a pass, not bit-exact."""
# compat: expect=pass
from _selftest import REMOTE, Digest, emit, touch_driver

touch_driver()
vals = [1.0, -2.5, 1e6, 0.0, float("nan")]
if REMOTE:
    vals = [v * (1 + 1e-9) for v in vals]
emit("selftest_tolerance", Digest().add("v", vals).hexdigest(), tolerance="rtol=1e-6 atol=0", values=vals, rtol=1e-6,
     atol=0.0)
