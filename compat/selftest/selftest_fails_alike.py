"""Selftest: fails the same way natively and through gpuwire: native-failed, never a pass."""
# compat: expect=native-failed
import sys

print("selftest: fails everywhere", file=sys.stderr)
sys.exit(3)
