"""Selftest: only timings differ (a *_ms field and a duration in the notes): a pass."""
# compat: expect=pass
from _selftest import REMOTE, Digest, emit

ms = 9.25 if REMOTE else 1.5
emit("selftest_timing", Digest().add("x", [1]).hexdigest(), notes=f"event timing {ms:.2f} ms (not compared)", copy_ms=ms)
