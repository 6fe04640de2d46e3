"""Selftest: fails natively (exit 1, message on stderr): native-failed, not a gpuwire failure."""
# compat: expect=native-failed
import sys

from _selftest import REMOTE, emit

if not REMOTE:
    print("selftest: no GPU here, natively", file=sys.stderr)
    sys.exit(1)
emit("selftest_native_failure", "d")
