"""A module load or link whose JIT or library options carry a pointer (a log
buffer, a function table) is refused as malformed: the driver would write or
read through a client's address inside the worker. A log the worker is asked
to hold for the driver is at most 1 MiB, asked once: a hostile size ends the
session instead of allocating it. And a LAND frame out of bounds ends its
session too. The server and other sessions carry on."""

import struct

import pytest

from conftest import ROOT
from gpuwire import protocol
from test_cache_wire import frame, op_id
from test_server import assert_malformed_ends_session

CU_JIT_INFO_LOG_BUFFER = 3
CU_LIBRARY_HOST_UNIVERSAL_FUNCTION_AND_DATA_TABLE = 0
CU_JIT_MAX_REGISTERS = 0
CU_JIT_WALL_TIME, CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES = 2, 4, 6


def options(opts: list[tuple[int, int]]) -> bytes:
    return struct.pack("<I", len(opts)) + b"".join(struct.pack("<IQ", o, v) for o, v in opts)


def link_add(opts: list[tuple[int, int]]) -> bytes:
    # link id, input type (fat binary), size, name "x", options
    return struct.pack("<QIQI", 0x10008, 2, 64, 1) + b"x" + options(opts)


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
    ("jit log of 2 MiB", frame(op_id("cuModuleLoadDataEx"), load([(CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES, 2 << 20)], [])),
     "JIT log of 2097152 bytes"),
    ("library jit log of 4 GiB",
     frame(op_id("cuLibraryLoadData"), load([(CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES, 4 << 30)], [])),
     "JIT log of 4294967296 bytes"),
    ("link log of 2^64-1 bytes", frame(op_id("cuLinkCreate_v2"), options([(CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES, 2**64 - 1)])),
     "JIT log of 18446744073709551615 bytes"),
    ("link log asked twice",
     frame(op_id("cuLinkCreate_v2"), options([(CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES, 16)] * 2)), "JIT log of 16 bytes"),
    ("link wall time asked twice", frame(op_id("cuLinkCreate"), options([(CU_JIT_WALL_TIME, 0)] * 2)), "JIT option 2"),
    ("link input log buffer", frame(op_id("cuLinkAddData_v2"), link_add([(CU_JIT_INFO_LOG_BUFFER, 0x7FFF0000)])),
     "JIT option 3"),
    ("link input log of 1 MiB + 1",
     frame(op_id("cuLinkAddData_v2"), link_add([(CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES, (1 << 20) + 1)])),
     "JIT log of 1048577 bytes"),
    ("too many jit options", frame(op_id("cuModuleLoadDataEx"), load([(CU_JIT_MAX_REGISTERS, 32)] * 65, [])),
     "65 JIT options"),
    ("land of 0 bytes", frame(protocol.OP_DELIVER, struct.pack("<QQQQI", 1, 0x1000, 0, 0, 0)), "LAND"),
    ("land with unknown flags", frame(protocol.OP_DELIVER, struct.pack("<QQQQI", 1, 0x1000, 16, 0, 6)), "LAND"),
]


@pytest.mark.parametrize("what,data,reason", BAD, ids=[b[0] for b in BAD])
def test_pointer_options_and_bad_landings_end_the_session(server, what, data, reason):
    assert_malformed_ends_session(server, data, reason)
