"""Kernel parameter layouts read from the program's own fatbins (issue 20
item 5: event timing that tells the truth).

The real driver loads a fatbin's kernels lazily: right after the load it
cannot tell their parameter layouts, so the client used to ask for each
kernel's layout at its first launch (FUNC_LAYOUT), a round trip that fell
between the events a program times its first launch with (NVIDIA's
TensorCoreGemm samples: 1.37 ms through gpuwire against 1.17 natively). The
client now reads the layouts from the fatbin's cubin for the device, plain
or compressed (Zstandard, LZ4). The stand-in plays the lazy driver with
GPUWIRE_STANDIN_LAZY=1."""

import ctypes.util
import sys
import json

import pytest

from conftest import ROOT, explain, gw_run, start_server

PROGRAMS = ROOT / "build" / "programs"
# one kernel in a cudart fatbin (sm_90 cubin + PTX): the cubin plain (nvcc's default), or
# compressed as -Xfatbin -compress-all builds have it (Zstandard; LZ4 with
# --compress-mode=speed), which the client unpacks with the system's library
VARIANTS = {"plain": ("vector_add_shared", None), "zstd": ("vector_add_zstd", "zstd"),
            "lz4": ("vector_add_lz4", "lz4")}


@pytest.fixture(scope="module")
def lazy_server(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("lazy") / "server.log", env={"GPUWIRE_STANDIN_LAZY": "1"})
    yield srv
    srv.stop()


def run(srv, tmp_path, variant, name, env):
    program, lib = VARIANTS[variant]
    if not (PROGRAMS / program).exists():
        pytest.skip(f"{program} is not built (run scripts/setup)")
    if lib and not ctypes.util.find_library(lib):
        pytest.skip(f"no lib{lib} on this machine: such cubins are not read (the layouts are asked for)")
    stats = tmp_path / f"{name}.json"
    r = gw_run([str(PROGRAMS / program)], srv.address, stats=stats, env=env)
    assert r.returncode == 0 and "PASS vector_add" in r.stdout, explain(r, srv)
    return json.loads(stats.read_text())


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_a_first_launch_asks_no_layout(lazy_server, tmp_path, variant):
    read = run(lazy_server, tmp_path, variant, "read", {})
    asked = run(lazy_server, tmp_path, variant, "asked", {"GPUWIRE_CUBIN_INFO": "0"})
    # the kernel's answer (sum) is checked by the program: the layout read is the one the launch needs
    assert read["round_trips"] == asked["round_trips"] - 1, (read["round_trips"], asked["round_trips"])
    # what was read agreed with all the worker could tell (names, count, static shared sizes)
    assert read["image_info"]["checked"] >= 1 and read["image_info"]["differing"] == 0, read["image_info"]
    assert asked["image_info"]["checked"] == 0, asked["image_info"]


def test_an_eager_driver_still_agrees(server, tmp_path):
    """With every layout known to the worker at load, what the client read
    from the fatbin is checked against it, kernel by kernel."""
    s = run(server, tmp_path, "plain", "eager", {})
    assert s["image_info"]["checked"] >= 1 and s["image_info"]["differing"] == 0, s["image_info"]


DAMAGED = r"""
import ctypes, struct, sys
cu = ctypes.CDLL("libcuda.so.1")
assert cu.cuInit(0) == 0

def entry(kind, flags, payload, packed=0, unpacked=0, arch=90, claimed=None):
    size = len(payload) if claimed is None else claimed
    head = struct.pack("<HHIQIIIIIIQQQ", kind, 0x0101, 64, size, packed, 0, 0x10008, arch, 0, 0, flags, 0, unpacked)
    return head + payload

def fatbin(entries):
    body = b"".join(entries)
    return struct.pack("<IHHQ", 0xBA55ED50, 1, 16, len(body)) + body

elf = b"\x7fELF\x02\x01\x01" + b"\0" * 57  # a header and nothing it points to
cases = [
    fatbin([entry(2, 0x8011, b"\x28\xb5\x2f\xfd" + b"\xff" * 60, packed=64, unpacked=1 << 20)]),  # zstd garbage
    fatbin([entry(2, 0x2011, b"\xff" * 64, packed=64, unpacked=1 << 20)]),  # LZ4 garbage
    fatbin([entry(2, 0x8011, b"\0" * 64, packed=64, unpacked=1 << 40)]),  # absurd size
    fatbin([entry(2, 0x11, elf)]),  # an ELF header whose tables are not there
    fatbin([entry(2, 0x11, elf, claimed=1 << 30)]),  # an entry longer than the fatbin
    fatbin([entry(2, 0x11, elf), entry(2, 0x11, elf)]),  # two cubins for the device
]
for i, img in enumerate(cases):
    buf = ctypes.create_string_buffer(img, len(img))
    lib = ctypes.c_void_p()
    rc = cu.cuLibraryLoadData(ctypes.byref(lib), buf, None, None, 0, None, None, 0)
    print("CASE", i, rc, flush=True)
print("DONE")
"""


def test_damaged_fatbins_are_not_read(server, tmp_path):
    """A fatbin whose cubin entry is damaged (compressed bytes that do not
    unpack, sizes past its end, an ELF without its tables, two candidates) is
    not read by the client: the load goes to the server as before and the
    program carries on."""
    r = gw_run([sys.executable, "-c", DAMAGED], server.address)
    assert r.returncode == 0 and r.stdout.strip().endswith("DONE"), explain(r, server)
    assert r.stdout.count("CASE ") == 6, r.stdout
