"""The program's own fatbins are loaded at cuInit by a thread of the client
(native/client/state/preload.c): the CUDA runtime's lazy cuLibraryLoadData at
the first launch then costs the application no wait, so a kernel timed with
events from its first launch (NVIDIA's samples) does not also time an upload
and the server's lookups. GPUWIRE_PRELOAD=0 leaves loading to the runtime."""

import re

import pytest

from conftest import PROGRAMS_DIR, explain, gw_run, NOT_BUILT

PROGRAM = PROGRAMS_DIR / "vector_add_shared"
APP_RT = re.compile(r"gpuwire: rt (\S+) ")
BACKGROUND_RT = re.compile(r"gpuwire: rt-background (\S+) ")


def _run(server, env):
    if not PROGRAM.is_file():
        pytest.skip(NOT_BUILT)
    r = gw_run([str(PROGRAM)], server=server.address, env={"GPUWIRE_TRACE_RT": "1", **env}, timeout=120)
    assert r.returncode == 0, explain(r, server)
    assert r.stdout.strip().splitlines()[-1] == "PASS vector_add", r.stdout
    return APP_RT.findall(r.stderr), BACKGROUND_RT.findall(r.stderr)


# every image by content address: a lazy load then waits for the cache's answer
BY_CONTENT = {"GPUWIRE_CACHE_MIN_IMAGE": "1"}


def test_the_programs_fatbins_load_before_their_first_launch(server):
    app, background = _run(server, BY_CONTENT)
    assert background.count("cuLibraryLoadData") == 2, background  # vector_add's two fatbins
    # the runtime's own load and its kernel lookup wait for nothing
    assert not {"cuLibraryLoadData", "cuLibraryGetKernel"} & set(app), app
    off, none = _run(server, {"GPUWIRE_PRELOAD": "0", **BY_CONTENT})
    assert none == [], none
    # without it, the first launch's load waited for the cache (control ops) on the application's thread
    assert off.count("control") > app.count("control"), (app, off)
