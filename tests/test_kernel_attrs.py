"""Issue 3: function attributes answered in the client (native/client/func_attrs.c).

tests/programs/kernel_attrs loads a bare cubin as a library and reads, sets and
rereads its kernels' attributes. Through gpuwire it must print exactly what it
prints linked straight to the stand-in driver (the GPU run compares it with the
real driver the same way), and cuDNN's per-token pattern (load a fresh cubin, set
its kernel's dynamic shared size and cluster flag, read every kernel's
attributes) must cost no attribute round trip: the values come with the load,
sets the client can judge are applied to what it keeps, and a set on one kernel
leaves every other kernel's values alone."""

import json
import os
import subprocess

import pytest

from conftest import ROOT, explain, gw_run
from gpuwire import paths

PROGRAM = ROOT / "build" / "programs" / "kernel_attrs"
ATTRIBUTE_OPS = ("cuKernelGetAttribute", "cuFuncGetAttribute")


def direct(tmp_path, *args):
    """The program linked straight to the stand-in driver, no gpuwire between."""
    lib = tmp_path / "direct"
    lib.mkdir(exist_ok=True)
    link = lib / "libcuda.so.1"
    if not link.exists():
        link.symlink_to(paths.NATIVE_DIR / "libgpuwire_standin.so")
    env = dict(os.environ, LD_LIBRARY_PATH=str(lib))
    return subprocess.run([str(PROGRAM), *args], capture_output=True, text=True, timeout=60, env=env)


def through_gpuwire(server, tmp_path, *args):
    stats = tmp_path / "stats.json"
    result = gw_run([str(PROGRAM), *args], server=server.address, stats=stats, timeout=120)
    assert result.returncode == 0, explain(result, server)
    return result, json.loads(stats.read_text())


@pytest.fixture(autouse=True)
def need_program():
    if not PROGRAM.exists():
        pytest.skip("build/programs/kernel_attrs is not built (make -C tests/programs)")


def test_attribute_reads_and_sets_match_the_driver(server, tmp_path):
    native = direct(tmp_path)
    assert native.returncode == 0, native.stdout + native.stderr
    result, _ = through_gpuwire(server, tmp_path)
    assert result.stdout.splitlines() == native.stdout.splitlines(), explain(result, server)
    assert result.stdout.strip().splitlines()[-1] == "PASS kernel_attrs"


def test_cudnn_pattern_costs_no_attribute_round_trip(server, tmp_path):
    native = direct(tmp_path, "cudnn")
    assert native.returncode == 0, native.stdout + native.stderr
    result, stats = through_gpuwire(server, tmp_path, "cudnn")
    assert result.stdout.splitlines() == native.stdout.splitlines(), explain(result, server)
    # rounds 1..4 read every attribute of every kernel so far: (1+2+3+4) x 16
    assert stats["by_function"].get("cuKernelGetAttribute", 0) == 10 * 16, stats["by_function"]
    waited = {op: stats["round_trips_by_function"].get(op, 0) for op in ATTRIBUTE_OPS}
    assert waited == {op: 0 for op in ATTRIBUTE_OPS}, (waited, stats["round_trips_by_function"])

