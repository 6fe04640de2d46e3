"""Selftest: equal digests but another reported field differs (a count in the notes, as cudaHostGetFlags did): a FAIL."""
# compat: expect=FAIL
from _selftest import REMOTE, Digest, emit

emit("selftest_notes_differ", Digest().add("x", [1, 2, 3]).hexdigest(), notes=f"graph of {6 if REMOTE else 5} nodes")
