"""cuGetExportTable is answered in the client: the tables cudart asks for are
there with the sizes the real driver gives them, and an unknown one is refused
the way the real driver refuses it."""

import ctypes

import pytest

from conftest import ROOT

LIB = ROOT / "src" / "gpuwire" / "_native" / "libcuda.so.1"

# (uuid, words in the table as the real 580 driver sizes them; None: no size word)
TABLES = {
    "6bd5fb6c5bf4e74a8987d93912fd9df9": 13,   # cudart interface
    "a094798c2e742e7493f20800200c0a66": 7,    # tools runtime callback hooks
    "42d85a8123f6cb478298f6e78a3aecdc": 3,    # tools TLS
    "263e88607cd2614392f6bbd5006dfa7e": 15,   # context checks
    "d4082055bde6704b8d34ba123c66e1f2": 3,    # integrity check
    "21318c6097143248 8ca641ff7324c8f2".replace(" ", ""): 93,  # cuBLAS
    "c693336e1121df11a8c368f355d89593": None,  # context-local storage
}


@pytest.fixture(scope="module")
def cuda():
    if not LIB.exists():
        pytest.skip("the client library is not built (run scripts/setup)")
    return ctypes.CDLL(str(LIB))


def get(cuda, hexid):
    uuid = (ctypes.c_ubyte * 16)(*bytes.fromhex(hexid))
    table = ctypes.c_void_p(1)
    rc = cuda.cuGetExportTable(ctypes.byref(table), ctypes.byref(uuid))
    return rc, table.value


@pytest.mark.parametrize("hexid,words", TABLES.items())
def test_known_tables_are_served(cuda, hexid, words):
    rc, table = get(cuda, hexid)
    assert rc == 0 and table
    if words is not None:
        assert ctypes.c_size_t.from_address(table).value == words * 8
        slots = (ctypes.c_void_p * words).from_address(table)
        assert all(slots[i] for i in range(1, words)), "a slot is NULL: callers would jump to 0"


def test_unknown_table_is_refused(cuda):
    rc, table = get(cuda, "00112233445566778899aabbccddeeff")
    assert rc == 1 and table is None  # CUDA_ERROR_INVALID_VALUE, NULL, as the real driver answers
