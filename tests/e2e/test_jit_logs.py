"""JIT options whose values the driver writes (issue 14 item 4): info and
error log buffers, the bytes filled written back into their size options, the
wall time written over its option value. tests/programs/jit_logs passes them
to cuLinkCreate (the logs come later, with cuLinkAddData and cuLinkComplete,
failures included), to one input, to cuModuleLoadDataEx and to
cuLibraryLoadData, linked and through dlopen as Ollama does. Through gpuwire
it must print exactly what it prints linked straight to the stand-in driver.
A load with outputs waits for its reply (the application reads them when the
call returns); a load without stays posted."""

import json
import os
import subprocess

import pytest

from conftest import ROOT, explain, gw_run
from gpuwire import paths

PROGRAMS = [ROOT / "build" / "programs" / name for name in ("jit_logs", "jit_logs_dlopen")]


def direct_dir(tmp_path):
    """A folder whose libcuda.so.1 is the stand-in driver."""
    lib = tmp_path / "direct"
    lib.mkdir(exist_ok=True)
    link = lib / "libcuda.so.1"
    if not link.exists():
        link.symlink_to(paths.NATIVE_DIR / "libgpuwire_standin.so")
    return lib


def direct(tmp_path, program):
    """The program linked straight to the stand-in driver, no gpuwire between."""
    env = dict(os.environ, LD_LIBRARY_PATH=str(direct_dir(tmp_path)))
    return subprocess.run([str(program)], capture_output=True, text=True, timeout=60, env=env)


@pytest.mark.parametrize("program", PROGRAMS, ids=[p.name for p in PROGRAMS])
def test_logs_sizes_and_wall_time_reach_the_application(server, tmp_path, program):
    if not program.exists():
        pytest.skip(f"build/programs/{program.name} is not built (make -C tests/programs)")
    native = direct(tmp_path, program)
    assert native.returncode == 0, native.stdout + native.stderr
    stats_path = tmp_path / "stats.json"
    result = gw_run([str(program)], server=server.address, stats=stats_path, timeout=120)
    assert result.returncode == 0, explain(result, server)
    assert result.stdout.splitlines() == native.stdout.splitlines(), explain(result, server)
    assert result.stdout.strip().splitlines()[-1] == f"PASS {program.name}"
    waits = json.loads(stats_path.read_text())["round_trips_by_function"]
    # two loads each with outputs wait; the module load with a number only is posted
    assert waits.get("cuModuleLoadDataEx", 0) == 2, waits
    assert waits.get("cuLibraryLoadData", 0) == 2, waits
    assert waits.get("cuModuleLoadData", 0) == 0, waits


def test_any_driver_mode_matches_the_driver(server, tmp_path):
    """"jit_logs any" (what the GPU check compares with the real driver: real
    PTX, sizes told as text or text+NUL) prints the same through gpuwire."""
    program = PROGRAMS[0]
    if not program.exists():
        pytest.skip("build/programs/jit_logs is not built (make -C tests/programs)")
    native = subprocess.run([str(program), "any"], capture_output=True, text=True, timeout=60,
                            env=dict(os.environ, LD_LIBRARY_PATH=str(direct_dir(tmp_path))))
    assert native.returncode == 0, native.stdout + native.stderr
    result = gw_run([str(program), "any"], server=server.address, timeout=120)
    assert result.returncode == 0, explain(result, server)
    assert result.stdout.splitlines() == native.stdout.splitlines(), explain(result, server)
