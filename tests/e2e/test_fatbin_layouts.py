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
