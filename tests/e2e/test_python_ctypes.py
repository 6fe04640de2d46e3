"""A Python program that loads libcuda.so.1 itself through ctypes (as many
frameworks do) gets gpuwire's client library, by bare name and by an absolute
path to where a real driver would be."""

import json
import os

import pytest

from conftest import explain, gw_run, native_client_lib

SNIPPET = r"""
import ctypes, json, os, sys
lib = ctypes.CDLL(sys.argv[1])
res = {"init": lib.cuInit(0)}
count = ctypes.c_int(-1)
res["count_rc"] = lib.cuDeviceGetCount(ctypes.byref(count))
res["count"] = count.value
dev = ctypes.c_int(-1)
res["get_rc"] = lib.cuDeviceGet(ctypes.byref(dev), 0)
name = ctypes.create_string_buffer(256)
res["name_rc"] = lib.cuDeviceGetName(name, 256, dev)
res["name"] = name.value.decode(errors="replace")
with open("/proc/self/maps") as f:
    res["maps"] = sorted({l.split()[-1] for l in f if "libcuda" in l and len(l.split()) >= 6})
print("RESULT " + json.dumps(res))
"""

# Bare soname, and the absolute path a real driver has on Debian/Ubuntu (absent
# here; on a GPU machine it exists, and must still not be the one loaded).
NAMES = ["libcuda.so.1", "/usr/lib/x86_64-linux-gnu/libcuda.so.1"]


@pytest.mark.parametrize("name", NAMES)
def test_ctypes_loads_gpuwire_libcuda(name, server):
    import sys

    result = gw_run([sys.executable, "-c", SNIPPET, name], server=server.address, timeout=60)
    assert result.returncode == 0, explain(result, server)
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, explain(result, server)
    res = json.loads(lines[-1][len("RESULT "):])
    assert res["init"] == 0, f"cuInit returned {res['init']}"
    assert res["count_rc"] == 0 and res["count"] >= 1, res
    assert res["get_rc"] == 0, res
    assert res["name_rc"] == 0 and res["name"], res
    ours = os.path.realpath(native_client_lib())
    assert res["maps"] == [ours], f"libcuda mappings {res['maps']}, expected only gpuwire's {ours}"
