"""Selftest: exits 0 without a JSON result line through gpuwire: a FAIL (no result)."""
# compat: expect=FAIL
from _selftest import REMOTE, emit

if REMOTE:
    print("some output, but no result line")
else:
    emit("selftest_no_result", "d")
