"""Shared by the selftest workloads (compat/run --dry-run): whether this run is the gpuwire one, and a driver call."""
import ctypes
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "workloads"))
from _common import Digest, emit  # noqa: E402,F401

REMOTE = bool(os.environ.get("GPUWIRE_LIBDIR"))


def touch_driver():
    """cuInit through whatever libcuda.so.1 this process gets (gpuwire's: stats are written); none natively here."""
    try:
        return ctypes.CDLL("libcuda.so.1").cuInit(0)
    except OSError:
        return None
