"""CUDA arrays (2D, 3D, layered, cubemap) and copies with them, through
gpuwire against the stand-in: tests/programs/arrays.c."""

import pytest

from conftest import NOT_BUILT, PROGRAMS_DIR, explain, gw_run


def test_arrays_program_passes(server):
    program = PROGRAMS_DIR / "arrays"
    if not program.is_file():
        pytest.skip(NOT_BUILT)
    result = gw_run([str(program)], server=server.address, timeout=120)
    assert result.returncode == 0, explain(result, server)
    assert result.stdout.strip().splitlines()[-1] == "PASS arrays", explain(result, server)
    # every entry point it uses is remoted: none was refused as unsupported
    assert "not supported by gpuwire" not in result.stderr, explain(result, server)
