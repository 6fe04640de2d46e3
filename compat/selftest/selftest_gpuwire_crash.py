"""Selftest: raises through gpuwire only: a FAIL explained by the traceback's last lines."""
# compat: expect=FAIL
from _selftest import REMOTE, emit, touch_driver

touch_driver()
if REMOTE:
    raise RuntimeError("selftest: simulated failure through gpuwire")
emit("selftest_gpuwire_crash", "d")
