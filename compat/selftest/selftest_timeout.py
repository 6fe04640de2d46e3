"""Selftest: hangs through gpuwire past its 4-second timeout: a FAIL (timed out), its process group killed."""
# compat: timeout=4
# compat: expect=FAIL
import subprocess
import sys
import time

from _selftest import REMOTE, emit

if REMOTE:
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # a child the runner must also end
    time.sleep(60)
emit("selftest_timeout", "d")
