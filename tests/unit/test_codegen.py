"""The generated sources are committed and must match a fresh generator run,
and the client's cuGetProcAddress must honour versions, flags and the
symbol-status out-parameter (it is answered in the client: no server needed)."""

import ctypes
import subprocess
import sys

import pytest

from conftest import ROOT

LIB = ROOT / "src" / "gpuwire" / "_native" / "libcuda.so.1"


def test_generated_sources_are_current():
    r = subprocess.run([sys.executable, str(ROOT / "codegen" / "gen.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture(scope="module")
def cuda():
    if not LIB.exists():
        pytest.skip("the client library is not built (run scripts/setup)")
    return ctypes.CDLL(str(LIB))


def proc(cuda, name, version, flags=0):
    fn = ctypes.c_void_p()
    status = ctypes.c_int(-1)
    rc = cuda.cuGetProcAddress_v2(name.encode(), ctypes.byref(fn), version, ctypes.c_uint64(flags),
                                  ctypes.byref(status))
    return rc, fn.value, status.value


def addr(cuda, symbol):
    return ctypes.cast(getattr(cuda, symbol), ctypes.c_void_p).value


@pytest.mark.parametrize("name,version,flags,symbol", [
    ("cuMemAlloc", 13000, 0, "cuMemAlloc_v2"),
    ("cuMemAlloc", 3020, 0, "cuMemAlloc_v2"),
    ("cuMemAlloc", 2000, 0, "cuMemAlloc"),
    ("cuMemcpyHtoDAsync", 13000, 0, "cuMemcpyHtoDAsync_v2"),
    ("cuMemcpyHtoDAsync", 13000, 2, "cuMemcpyHtoDAsync_v2_ptsz"),
    ("cuStreamSynchronize", 13000, 2, "cuStreamSynchronize_ptsz"),
    ("cuCtxCreate", 13000, 0, "cuCtxCreate_v4"),
    ("cuGetProcAddress", 13000, 0, "cuGetProcAddress_v2"),
    ("cuGetExportTable", 13000, 0, "cuGetExportTable"),
])
def test_proc_address_picks_the_version_asked_for(cuda, name, version, flags, symbol):
    rc, fn, status = proc(cuda, name, version, flags)
    assert (rc, status) == (0, 0)
    assert fn == addr(cuda, symbol)


def test_proc_address_reports_why_not(cuda):
    rc, fn, status = proc(cuda, "cuMemAlloc", 1000)
    assert rc == 500 and fn is None and status == 2  # CUDA_ERROR_NOT_FOUND, VERSION_NOT_SUFFICIENT
    rc, fn, status = proc(cuda, "cuNoSuchFunction", 13000)
    assert rc == 500 and fn is None and status == 1  # SYMBOL_NOT_FOUND
    rc, fn, status = proc(cuda, "", 0)
    assert rc == 500 and status == 1


def test_every_driver_symbol_is_exported(cuda):
    missing = [s for s in (ROOT / "codegen" / "driver_symbols.txt").read_text().split() if not hasattr(cuda, s)]
    assert not missing, missing[:20]


def test_unforwarded_function_is_not_supported(cuda):
    # cuGraphAddExternalSemaphoresSignalNode is exported but not remoted yet: a clear error, never a silent success
    assert cuda.cuGraphAddExternalSemaphoresSignalNode(None, None, None, 0, None) == 801  # CUDA_ERROR_NOT_SUPPORTED
