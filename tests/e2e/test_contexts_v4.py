"""CUDA 13's context entry points (cuCtxCreate_v4 with its parameter block,
cuCtxGetId, cuCtxRecordEvent/WaitEvent, cuCtxSynchronize_v2), the profiler
switches and cooperative launches, through gpuwire against the stand-in:
tests/programs/ctx_v4.c, linked against libcuda and loading it with dlopen +
cuGetProcAddress as Ollama does."""

import pytest

from conftest import NOT_BUILT, PROGRAMS_DIR, explain, gw_run


@pytest.mark.parametrize("name", ["ctx_v4", "ctx_v4_dlopen"])
def test_context_program_passes(name, server):
    program = PROGRAMS_DIR / name
    if not program.is_file():
        pytest.skip(NOT_BUILT)
    result = gw_run([str(program)], server=server.address, timeout=120)
    assert result.returncode == 0, explain(result, server)
    assert result.stdout.strip().splitlines()[-1] == f"PASS {name}", explain(result, server)
    # every entry point it uses is remoted: none was refused as unsupported
    assert "not supported by gpuwire" not in result.stderr, explain(result, server)
