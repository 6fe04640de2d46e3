"""A module load whose JIT or library options carry a pointer (a log buffer, a
function table) is refused as malformed: the driver would write or read
through a client's address inside the worker. And a LAND frame out of bounds
ends its session too. The server and other sessions carry on."""

import struct

import pytest

from conftest import ROOT
from gpuwire import protocol
from test_cache_wire import frame, op_id
from test_server import assert_malformed_ends_session

CU_JIT_INFO_LOG_BUFFER = 3
CU_LIBRARY_HOST_UNIVERSAL_FUNCTION_AND_DATA_TABLE = 0
CU_JIT_MAX_REGISTERS = 0


def load(jit: list[tuple[int, int]], lib: list[tuple[int, int]]) -> bytes:
    body = struct.pack("<QQ", (1 << 62) | 8, 64)  # client-named module id, image size
    for opts in (jit, lib):
        body += struct.pack("<I", len(opts)) + b"".join(struct.pack("<IQ", o, v) for o, v in opts)
    return body


BAD = [
    ("jit log buffer", frame(op_id("cuModuleLoadDataEx"), load([(CU_JIT_INFO_LOG_BUFFER, 0x7FFF0000)], [])),
     "JIT option 3"),
    ("library function table",
     frame(op_id("cuLibraryLoadData"), load([], [(CU_LIBRARY_HOST_UNIVERSAL_FUNCTION_AND_DATA_TABLE, 0x1234)])),
     "library option 0"),
    ("land of 0 bytes", frame(protocol.OP_LAND, struct.pack("<QQQQI", 1, 0x1000, 0, 0, 0)), "LAND"),
    ("land with unknown flags", frame(protocol.OP_LAND, struct.pack("<QQQQI", 1, 0x1000, 16, 0, 6)), "LAND"),
]


@pytest.mark.parametrize("what,data,reason", BAD, ids=[b[0] for b in BAD])
def test_pointer_options_and_bad_landings_end_the_session(server, what, data, reason):
    assert_malformed_ends_session(server, data, reason)
