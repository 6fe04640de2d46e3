"""Selftest: the digest differs through gpuwire: a FAIL (results differ)."""
# compat: expect=FAIL
from _selftest import REMOTE, Digest, emit

emit("selftest_differs", Digest().add("x", "remote" if REMOTE else "native").hexdigest())
