"""CUDA arrays (2D, 3D, layered, cubemap) and copies with them, through
gpuwire against the stand-in: tests/programs/arrays.c."""

import struct

import pytest

from conftest import NOT_BUILT, PROGRAMS_DIR, explain, gw_run
from test_cache_wire import frame, op_id
from test_server import assert_malformed_ends_session


def test_arrays_program_passes(server):
    program = PROGRAMS_DIR / "arrays"
    if not program.is_file():
        pytest.skip(NOT_BUILT)
    result = gw_run([str(program)], server=server.address, timeout=120)
    assert result.returncode == 0, explain(result, server)
    assert result.stdout.strip().splitlines()[-1] == "PASS arrays", explain(result, server)
    # every entry point it uses is remoted: none was refused as unsupported
    assert "not supported by gpuwire" not in result.stderr, explain(result, server)


CU_MEMORYTYPE_HOST, CU_MEMORYTYPE_ARRAY = 1, 3


def band(width: int, rows: int, array_id: int = 0x10001) -> bytes:
    """A cuMemcpy2D_v2 band from an array at (0, 0, 0) to host memory."""
    src = struct.pack("<IQQQQQ", CU_MEMORYTYPE_ARRAY, array_id, 0, 0, 0, 0)
    dst = struct.pack("<IQQ", CU_MEMORYTYPE_HOST, 0, 0)
    return struct.pack("<Q", 0) + src + dst + struct.pack("<QQ", width, rows)


HOSTILE = [
    ("4 MiB + 1 row", "cuMemcpy2D_v2", band((4 << 20) + 1, 1), "over the chunk size"),
    ("2^32 x 2^32 overflow", "cuMemcpy2D_v2", band(1 << 32, 1 << 32), "over the chunk size"),
    ("band cut short", "cuMemcpy2D_v2", band(16, 1)[:-4], "cuMemcpy2D_v2"),
    ("texture descriptors cut short", "cuTexObjectCreate", bytes(100), "truncated"),
    ("surface descriptor cut short", "cuSurfObjectCreate", bytes(8), "truncated"),
]


@pytest.mark.parametrize("what,op,payload,reason", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_array_requests_end_the_session(server, what, op, payload, reason):
    """The worker bounds every band with an array side as it does others (its
    bytes fit one chunk, its fields are all there), and reads a texture's or
    surface's descriptors only when they are all there."""
    assert_malformed_ends_session(server, frame(op_id(op), payload), reason)
