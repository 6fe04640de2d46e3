"""Host memory the GPU sees (docs/host-memory.md): mapped allocations,
registrations and managed memory through gpuwire against the stand-in
(tests/programs/mapped_memory.cu), and the worker's checks on the client's
writes and fetches of such ranges."""

import struct
import time

import pytest

from conftest import NOT_BUILT, PROGRAMS_DIR, explain, gw_run
from gpuwire import wire_generated as wire
from test_cache_wire import frame
from test_server import assert_malformed_ends_session


@pytest.mark.parametrize("flavour", ["shared", "static"])
def test_mapped_memory_program_passes(server, flavour):
    program = PROGRAMS_DIR / f"mapped_memory_{flavour}"
    if not program.is_file():
        pytest.skip(NOT_BUILT)
    result = gw_run([str(program)], server=server.address, timeout=120, env={"GPUWIRE_DEBUG": "1"})
    assert result.returncode == 0, explain(result, server)
    assert result.stdout.strip().splitlines()[-1] == "PASS mapped_memory", explain(result, server)
    assert "device pointer is the host pointer: 1" in result.stdout, explain(result, server)
    assert "not supported by gpuwire" not in result.stderr, explain(result, server)
    # the mirror was kept by page protection, and page-locked memory was mapped when asked for
    assert "page protection with a SIGSEGV handler" in result.stderr, explain(result, server)
    assert "is now mapped: the device asked for it" in result.stderr, explain(result, server)


def test_mapped_allocations_at_addresses_the_client_chooses(server):
    """When every address the worker offers for a page-locked allocation is
    taken in the client (a PyTorch process asking cuDNN for 4 mapped bytes on
    the H100), the client picks fresh pages of its own and the worker maps and
    registers them there; GPUWIRE_MAPPED_OWN_ADDRESS=1 takes that path for every
    allocation. The whole program (allocations, host writes between launches,
    frees) passes as with the worker's addresses."""
    program = PROGRAMS_DIR / "mapped_memory_shared"
    if not program.is_file():
        pytest.skip(NOT_BUILT)
    result = gw_run([str(program)], server=server.address, timeout=120,
                    env={"GPUWIRE_DEBUG": "1", "GPUWIRE_MAPPED_OWN_ADDRESS": "1"})
    assert result.returncode == 0, explain(result, server)
    assert result.stdout.strip().splitlines()[-1] == "PASS mapped_memory", explain(result, server)
    assert "at an address of this process's choosing" in result.stderr, explain(result, server)


def test_a_fault_outside_mapped_memory_is_the_programs(server):
    """gpuwire's SIGSEGV handler serves only its own ranges: any other fault
    kills the program with SIGSEGV, as without gpuwire, instead of looping."""
    program = PROGRAMS_DIR / "mapped_memory_shared"
    if not program.is_file():
        pytest.skip(NOT_BUILT)
    result = gw_run([str(program), "crash"], server=server.address, timeout=60)
    assert "faulting on purpose" in result.stdout, explain(result, server)
    assert result.returncode in (-11, 139), explain(result, server)


def test_host_touch_of_managed_memory_during_a_kernel_waits_for_it(server):
    """The device reports CONCURRENT_MANAGED_ACCESS 0: the host writing globally
    attached managed memory while a kernel may run first waits for the
    context's work (the touch then comes after the kernel, and sees what it
    wrote), instead of racing the device on two copies (the systemWideAtomics
    sample got a wrong sum so). With no wait allowed it faults with a message,
    as on such a device; GPUWIRE_MANAGED_CONCURRENT=1 lets them race."""
    program = PROGRAMS_DIR / "mapped_memory_shared"
    if not program.is_file():
        pytest.skip(NOT_BUILT)
    waited = gw_run([str(program), "managed-race"], server=server.address, timeout=60)
    assert waited.returncode == 0 and "PASS mapped_memory managed-race" in waited.stdout, explain(waited, server)
    result = gw_run([str(program), "managed-race"], server=server.address, timeout=60,
                    env={"GPUWIRE_MANAGED_WAIT_S": "0"})
    assert "touching managed memory (race)" in result.stdout, explain(result, server)
    assert result.returncode in (-11, 139), explain(result, server)
    assert "CONCURRENT_MANAGED_ACCESS 0" in result.stderr, explain(result, server)
    raced = gw_run([str(program), "managed-race"], server=server.address, timeout=60,
                   env={"GPUWIRE_MANAGED_CONCURRENT": "1"})
    assert raced.returncode == 0 and "PASS mapped_memory managed-race" in raced.stdout, explain(raced, server)


def test_host_touch_of_managed_memory_during_a_long_kernel_faults_after_the_wait(server):
    """A kernel still running GPUWIRE_MANAGED_WAIT_S after the touch (a 5 s
    kernel, 1 s allowed): the touch faults, with a message naming the wait."""
    program = PROGRAMS_DIR / "mapped_memory_shared"
    if not program.is_file():
        pytest.skip(NOT_BUILT)
    t0 = time.monotonic()
    result = gw_run([str(program), "managed-hung"], server=server.address, timeout=60,
                    env={"GPUWIRE_MANAGED_WAIT_S": "1"})
    took = time.monotonic() - t0
    assert "touching managed memory (hung)" in result.stdout, explain(result, server)
    assert result.returncode in (-11, 139), explain(result, server)
    assert "did not end within GPUWIRE_MANAGED_WAIT_S" in result.stderr, explain(result, server)
    assert took < 4.5, f"the fault came after {took:.1f} s, not after the 1 s wait"


@pytest.mark.parametrize("how", ["synced", "copied", "attached"])
def test_host_touch_of_managed_memory_allowed(server, how):
    """After a synchronize or a synchronous copy, or attached to the host
    (cuStreamAttachMemAsync), the host may touch managed memory."""
    program = PROGRAMS_DIR / "mapped_memory_shared"
    if not program.is_file():
        pytest.skip(NOT_BUILT)
    result = gw_run([str(program), f"managed-{how}"], server=server.address, timeout=60)
    assert result.returncode == 0, explain(result, server)
    assert f"PASS mapped_memory managed-{how}" in result.stdout, explain(result, server)


def test_a_forked_child_forgets_the_parents_mapped_ranges(server):
    """A child forked while the parent's mapped pages are stale can touch its
    registered pages (its own memory now) and exit; the parent goes on."""
    program = PROGRAMS_DIR / "mapped_memory_shared"
    if not program.is_file():
        pytest.skip(NOT_BUILT)
    result = gw_run([str(program), "fork"], server=server.address, timeout=60)
    assert result.returncode == 0, explain(result, server)
    assert result.stdout.strip().splitlines()[-1] == "PASS mapped_memory fork", explain(result, server)


HOSTILE = [
    ("write outside any range", wire.OP_MAPPED_WRITE, struct.pack("<Q", 0x10000) + b"x" * 16,
     "not inside a mapped range"),
    ("write cut short", wire.OP_MAPPED_WRITE, b"\0" * 4, "too short"),
    ("read outside any range", wire.OP_MAPPED_READ, struct.pack("<QQ", 0x10000, 4096),
     "not inside a mapped range"),
    ("read of nothing", wire.OP_MAPPED_READ, struct.pack("<QQ", 0x10000, 0), "not inside a mapped range"),
    ("map of an unknown kind", wire.OP_MAPPED_MAP, struct.pack("<IIQQ", 9, 0, 0, 4096), "MAPPED_MAP"),
    ("map of nothing", wire.OP_MAPPED_MAP, struct.pack("<IIQQ", 1, 0, 0, 0), "MAPPED_MAP"),
    ("allocation at an address", wire.OP_MAPPED_MAP, struct.pack("<IIQQ", 1, 0, 0x7000, 4096), "MAPPED_MAP"),
]


@pytest.mark.parametrize("what,op,payload,reason", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_mapped_requests_end_the_session(server, what, op, payload, reason):
    """The worker touches no byte outside the session's own ranges: a write or
    fetch elsewhere, or a malformed map request, ends that session only."""
    assert_malformed_ends_session(server, frame(op, payload), reason)


@pytest.mark.parametrize("flavour", ["shared", "static"])
def test_graph_memcpy_nodes_with_host_sides(server, flavour):
    """simpleCudaGraphs' shape: a memcpy node from page-locked memory (made a
    mapped range), a kernel, and a memcpy node into pageable memory (delivered
    after each launch), the graph launched three times with new host input."""
    program = PROGRAMS_DIR / f"graph_host_copies_{flavour}"
    if not program.is_file():
        pytest.skip(NOT_BUILT)
    result = gw_run([str(program)], server=server.address, timeout=120)
    assert result.returncode == 0, explain(result, server)
    assert result.stdout.strip().splitlines()[-1] == "PASS graph_host_copies", explain(result, server)
    assert "not supported by gpuwire" not in result.stderr, explain(result, server)
    # the host node that delivers the copy is gpuwire's: the graph shows its three nodes, as natively
    assert "nodes in the graph: 3" in result.stdout, explain(result, server)


# a ctypes client with a current context (the scripts below go on from it)
PRELUDE = r"""
import ctypes
cuda = ctypes.CDLL("libcuda.so.1")
assert cuda.cuInit(0) == 0
dev, ctx = ctypes.c_int(), ctypes.c_void_p()
assert cuda.cuDeviceGet(ctypes.byref(dev), 0) == 0
assert cuda.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) == 0
assert cuda.cuCtxSetCurrent(ctx) == 0
"""

LIMIT_SCRIPT = PRELUDE + r"""
DEVICEMAP = 2
p = ctypes.c_void_p()
small = cuda.cuMemHostAlloc(ctypes.byref(p), ctypes.c_size_t(256 << 10), DEVICEMAP)
big = cuda.cuMemHostAlloc(ctypes.byref(ctypes.c_void_p()), ctypes.c_size_t(2 << 20), DEVICEMAP)
print(small, big, cuda.cuMemFreeHost(p))
"""


def test_mapped_memory_is_bounded_per_session(tmp_path):
    """Page-locked memory on the server is the server's to lose: a session's
    mapped ranges stop at GPUWIRE_MAPPED_LIMIT with CUDA_ERROR_OUT_OF_MEMORY
    (2), and the session goes on."""
    import sys

    from conftest import start_server

    srv = start_server(tmp_path / "server.log", env={"GPUWIRE_MAPPED_LIMIT": str(1 << 20)})
    try:
        r = gw_run([sys.executable, "-c", LIMIT_SCRIPT], server=srv.address, timeout=60)
        assert r.returncode == 0, explain(r, srv)
        assert r.stdout.split() == ["0", "2", "0"], explain(r, srv)
    finally:
        srv.stop()


UNALIGNED_SCRIPT = PRELUDE + r"""
buf = ctypes.create_string_buffer(b"gpuwire", 100)  # shares its page with the interpreter's other objects
rc = cuda.cuMemHostRegister_v2(buf, ctypes.c_size_t(100), 2)
d, dev = ctypes.c_uint64(), ctypes.c_uint64()
rc2 = cuda.cuMemHostGetDevicePointer_v2(ctypes.byref(d), buf, 0)
assert cuda.cuMemAlloc_v2(ctypes.byref(dev), ctypes.c_size_t(100)) == 0
back = ctypes.create_string_buffer(100)
assert cuda.cuMemcpyHtoD_v2(dev, buf, ctypes.c_size_t(100)) == 0
assert cuda.cuMemcpyDtoH_v2(back, dev, ctypes.c_size_t(100)) == 0
print(rc, rc2, d.value == ctypes.addressof(buf), back.value.decode(), cuda.cuMemHostUnregister(buf))
"""


def test_a_mapped_registration_of_part_of_a_page(server):
    """Memory registered with DEVICEMAP becomes a mapped range page by page; a
    range that shares a page with other data cannot (it would fault or fail
    system calls on that data while stale). It is registered all the same,
    as natively (numba pins NumPy arrays so): copies through it work, its
    device pointer is its address, and the log says a kernel reaching it
    would fault (CUDA_ERROR_ILLEGAL_ADDRESS, and a log line at that launch)."""
    import sys

    r = gw_run([sys.executable, "-c", UNALIGNED_SCRIPT], server=server.address, timeout=60)
    assert r.returncode == 0, explain(r, server)
    assert r.stdout.split() == ["0", "0", "True", "gpuwire", "0"], explain(r, server)
    assert "with DEVICEMAP does not cover whole pages" in r.stderr, explain(r, server)


FAULTHANDLER_SCRIPT = PRELUDE + r"""
p = ctypes.c_void_p()
assert cuda.cuMemHostAlloc(ctypes.byref(p), ctypes.c_size_t(4096), 2) == 0  # DEVICEMAP: gpuwire's handler installed
ctypes.memmove(p, b"x", 1)  # a mapped page written: gpuwire's handler serves it
print("mapped page written", flush=True)
ctypes.string_at(16)  # a fault outside gpuwire's ranges
"""


def test_a_fault_outside_mapped_memory_reaches_pythons_faulthandler(server):
    """Python's faulthandler, enabled at start (python -X faulthandler, as
    pytest does) before gpuwire installs its SIGSEGV handler, still reports a
    crash outside gpuwire's ranges: gpuwire serves its own pages and passes
    every other fault on. (A handler installed after gpuwire's, without
    chaining, takes mapped pages' faults too: docs/host-memory.md.)"""
    import sys

    r = gw_run([sys.executable, "-X", "faulthandler", "-c", FAULTHANDLER_SCRIPT], server=server.address, timeout=60)
    assert "mapped page written" in r.stdout, explain(r, server)
    assert "Fatal Python error: Segmentation fault" in r.stderr, explain(r, server)
    assert r.returncode != 0, explain(r, server)
