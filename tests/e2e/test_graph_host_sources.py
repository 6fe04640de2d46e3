"""Issue 14: graph memcpy nodes that copy host-to-device from the client's
pageable memory (simpleCudaGraphs, jacobiCudaGraphs, graphMemoryNodes). The
worker's node copies from device staging of its own; every launch first
sends the bytes the source holds then (STAGING_FILL, posted, in stream order
before the launch). tests/programs/graph_host_sources.cu checks the bytes
through several executable graphs, clones, child graphs, set-params and a
stream capture (updates and an exec outliving its graph on the GPU only);
here also the round trips (adding such a node costs what a device-to-device
one does, launching costs none), stagings freed with the last graph that
reads them, sources this process cannot read refused, and the worker's
checks of the new ops' ids and lengths."""

import json
import struct
import sys

import pytest

from conftest import NOT_BUILT, PROGRAMS_DIR, explain, gw_run

def _program(flavour="shared"):
    program = PROGRAMS_DIR / f"graph_host_sources_{flavour}"
    if not program.is_file():
        pytest.skip(NOT_BUILT)
    return str(program)


@pytest.mark.parametrize("flavour", ["shared", "static"])
def test_host_sources_are_read_at_every_launch(server, flavour):
    r = gw_run([_program(flavour), "--standin"], server=server.address, timeout=120)
    assert r.returncode == 0, explain(r, server)
    lines = r.stdout.strip().splitlines()
    assert lines == [
        "a 9 MiB source: 2 launches, every byte",
        "another executable graph destroyed: this one still reads the source",
        "a clone and a parent graph read the source at their launches",
        "set to another host buffer: it is read at each launch",
        "the graph instantiated again reads its own source",
        "the graph's node set to another host buffer reads that one",
        "set to a device source: the host buffers no longer count",
        "a captured copy from pageable memory reads it at each launch",
        "captured copies into pageable memory write it at each launch",
        "PASS graph_host_sources",
    ], explain(r, server)
    assert "not supported by gpuwire" not in r.stderr, explain(r, server)


def _stats(server, tmp_path, k, source):
    stats = tmp_path / f"stats_{k}_{source}.json"
    r = gw_run([_program(), "launches", str(k), source], server=server.address, stats=stats)
    assert r.returncode == 0, explain(r, server)
    assert r.stdout.strip().splitlines()[0] == f"{k} launches from {source} memory: the last one's bytes arrived"
    return json.loads(stats.read_text())


def test_adding_and_launching_do_not_wait(server, tmp_path):
    host_one = _stats(server, tmp_path, 1, "host")
    host_many = _stats(server, tmp_path, 20, "host")
    device_one = _stats(server, tmp_path, 1, "device")
    # 19 more launches, each with its source's bytes, and not one more round trip
    assert host_many["round_trips"] == host_one["round_trips"], (host_one["round_trips"], host_many["round_trips"])
    # a node reading host memory is added in the round trip a device-to-device one takes
    assert host_one["round_trips"] == device_one["round_trips"], (host_one["round_trips"], device_one["round_trips"])
    # every launch sent the source's 64 KiB
    assert host_many["bytes_to_server"] - host_one["bytes_to_server"] >= 19 * 16384 * 4, (host_one, host_many)


UNREADABLE = r"""
import ctypes, struct
cuda = ctypes.CDLL("libcuda.so.1")
libc = ctypes.CDLL(None)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
assert cuda.cuInit(0) == 0
dev, ctx, g, node, d = ctypes.c_int(), ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_uint64()
assert cuda.cuDeviceGet(ctypes.byref(dev), 0) == 0
assert cuda.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) == 0
assert cuda.cuCtxSetCurrent(ctx) == 0
assert cuda.cuGraphCreate(ctypes.byref(g), 0) == 0
assert cuda.cuMemAlloc_v2(ctypes.byref(d), 8192) == 0
gone = libc.mmap(None, 8192, 3, 0x22, -1, 0)  # PROT_READ|WRITE, MAP_PRIVATE|ANONYMOUS
assert libc.munmap(ctypes.c_void_p(gone), ctypes.c_size_t(8192)) == 0

def copy3d(src_type, src):
    c = bytearray(200)
    struct.pack_into("<I4xQQ", c, 32, src_type, src if src_type == 1 else 0, src if src_type != 1 else 0)
    struct.pack_into("<I4xQQ", c, 120, 2, 0, d.value)
    struct.pack_into("<QQQ", c, 176, 8192, 1, 1)
    return ctypes.create_string_buffer(bytes(c), 200)

# a unified address nothing here maps (device memory the client does not know, say): never read here
assert cuda.cuGraphAddMemcpyNode(ctypes.byref(node), g, None, ctypes.c_size_t(0), copy3d(4, gone), ctx) == 801
# the same as host memory: refused too, rather than read at each launch
assert cuda.cuGraphAddMemcpyNode(ctypes.byref(node), g, None, ctypes.c_size_t(0), copy3d(1, gone), ctx) == 801
# readable pageable memory is a host source
buf = ctypes.create_string_buffer(8192)
assert cuda.cuGraphAddMemcpyNode(ctypes.byref(node), g, None, ctypes.c_size_t(0), copy3d(4, ctypes.addressof(buf)), ctx) == 0
assert cuda.cuGraphDestroy(g) == 0
print("ok")
"""


def test_a_source_not_mapped_here_is_refused(server):
    r = gw_run([sys.executable, "-c", UNREADABLE], server=server.address)
    assert r.returncode == 0 and r.stdout.strip() == "ok", explain(r, server)
    assert r.stderr.count("cuGraphAddMemcpyNode: a memcpy node with a side in host memory") == 2, explain(r, server)


CHURN = r"""
import ctypes, struct
cuda = ctypes.CDLL("libcuda.so.1")
assert cuda.cuInit(0) == 0
dev, ctx, g, x, node, d = ctypes.c_int(), ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_uint64()
assert cuda.cuDeviceGet(ctypes.byref(dev), 0) == 0
assert cuda.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) == 0
assert cuda.cuCtxSetCurrent(ctx) == 0
assert cuda.cuMemAlloc_v2(ctypes.byref(d), 64) == 0
buf = ctypes.create_string_buffer(64)
c = bytearray(200)
struct.pack_into("<I4xQ", c, 32, 1, ctypes.addressof(buf))  # HOST source
struct.pack_into("<I4xQQ", c, 120, 2, 0, d.value)
struct.pack_into("<QQQ", c, 176, 64, 1, 1)
copy = ctypes.create_string_buffer(bytes(c), 200)
# more graphs than the worker keeps stagings for at once: each one's is freed with it
for i in range(4200):
    assert cuda.cuGraphCreate(ctypes.byref(g), 0) == 0
    assert cuda.cuGraphAddMemcpyNode(ctypes.byref(node), g, None, ctypes.c_size_t(0), copy, ctx) == 0, i
    if i % 1000 == 0:  # now and then an executable graph that outlives its graph
        assert cuda.cuGraphInstantiateWithFlags(ctypes.byref(x), g, ctypes.c_ulonglong(0)) == 0
        assert cuda.cuGraphDestroy(g) == 0
        assert cuda.cuGraphExecDestroy(x) == 0
    else:
        assert cuda.cuGraphDestroy(g) == 0
assert cuda.cuCtxSynchronize() == 0
print("ok")
"""


def test_staging_goes_with_the_last_graph_that_reads_it(server):
    r = gw_run([sys.executable, "-c", CHURN], server=server.address, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", explain(r, server)


# --- the worker's checks, from a client that skips the library's -------------------------


def _copy3d(src_type, src_host, dst_type, dst_device, width, height=1):
    copy = bytearray(200)  # CUDA_MEMCPY3D
    struct.pack_into("<I4xQ", copy, 32, src_type, src_host)  # srcMemoryType, srcHost
    struct.pack_into("<I4xQQ", copy, 120, dst_type, 0, dst_device)  # dstMemoryType, dstHost, dstDevice
    struct.pack_into("<QQQ", copy, 176, width, height, 1)  # WidthInBytes, Height, Depth
    return bytes(copy)


def _fill(staging, offset, data, stream=0, flags=0):
    from gpuwire import wire_generated as wg
    from test_cache_wire import frame

    return frame(wg.OP_STAGING_FILL, struct.pack("<QQQI", staging, offset, stream, flags) + data, flags=wg.F_NOREPLY)


def _free(staging):
    from gpuwire import wire_generated as wg
    from test_cache_wire import frame

    return frame(wg.OP_STAGING_FREE, struct.pack("<Q", staging), flags=wg.F_NOREPLY)


def _cut_fill():
    from gpuwire import wire_generated as wg
    from test_cache_wire import frame

    return frame(wg.OP_STAGING_FILL, struct.pack("<QQ", 77, 0), flags=wg.F_NOREPLY)  # 16 of its 28 bytes of fields


MALFORMED = [
    ("fill of a staging never made", lambda: _fill(77, 0, b"x" * 8), "unknown staging"),
    ("fill with unknown flags", lambda: _fill(77, 0, b"x" * 8, flags=2), "flags"),
    ("fill with no bytes", lambda: _fill(77, 0, b""), "no bytes"),
    ("free of a staging never made", lambda: _free(77), "unknown staging"),
    ("fill truncated", lambda: _cut_fill(), "truncated"),
]


@pytest.mark.parametrize("what,make,reason", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_staging_requests_end_only_their_session(server, what, make, reason):
    from test_server import assert_malformed_ends_session

    assert_malformed_ends_session(server, make(), reason)


def _graph_with_a_source(raw, staging, width, height=1):
    """A graph holding a memcpy node from the client's memory (staging id `staging`): the add's result."""
    from test_cache_wire import op_id

    ctx, d = raw.setup(4096)
    graph = (1 << 62) | 8  # a client-named graph id
    assert raw.call(op_id("cuGraphCreate"), struct.pack("<QQ", graph, 0))[0] == 0
    add = struct.pack("<QI", graph, 0) + _copy3d(1, staging, 2, d, width, height) + struct.pack("<Q", ctx)
    return raw.call(op_id("cuGraphAddMemcpyNode"), add)[0]


def test_worker_bounds_a_staging_fill(server):
    """A staging made by a memcpy node takes bytes inside it only: past its end, the session ends."""
    from gpuwire import wire_generated as wg
    from test_cache_wire import op_id
    from test_server import expect_error_frame
    from test_session_backlog import Raw

    raw = Raw(server)
    try:
        assert _graph_with_a_source(raw, 5, 64) == 0
        # a second node cannot name the same staging
        inside = struct.pack("<QQQI", 5, 0, 0, 0) + b"y" * 64
        raw.send(wg.OP_STAGING_FILL, inside, flags=wg.F_NOREPLY)
        assert raw.call(op_id("cuCtxSynchronize"), b"", flags=wg.F_COLLECT)[0] == 0  # it went in
        raw.send(wg.OP_STAGING_FILL, struct.pack("<QQQI", 5, 60, 0, 0) + b"z" * 8, flags=wg.F_NOREPLY)
        code, msg = expect_error_frame(raw.sock)
        assert code == wg.ERR_MALFORMED and "8 bytes at 60 pass the end of staging 5 (64 bytes)" in msg, msg
    finally:
        raw.close()
    server.wait_for_log(r"session end", session=raw.sid)
    assert server.alive()


def test_a_freed_staging_takes_no_more_bytes(server):
    from gpuwire import wire_generated as wg
    from test_cache_wire import op_id
    from test_server import expect_error_frame
    from test_session_backlog import Raw

    raw = Raw(server)
    try:
        assert _graph_with_a_source(raw, 6, 64) == 0
        raw.send(wg.OP_STAGING_FREE, struct.pack("<Q", 6), flags=wg.F_NOREPLY)
        assert raw.call(op_id("cuCtxSynchronize"), b"", flags=wg.F_COLLECT)[0] == 0  # freed
        raw.send(wg.OP_STAGING_FILL, struct.pack("<QQQI", 6, 0, 0, 0) + b"y" * 64, flags=wg.F_NOREPLY)
        code, msg = expect_error_frame(raw.sock)
        assert code == wg.ERR_MALFORMED and "unknown staging 6" in msg, msg
    finally:
        raw.close()
    server.wait_for_log(r"session end", session=raw.sid)
    assert server.alive()


def test_worker_refuses_a_reused_staging_id(server):
    from gpuwire import wire_generated as wg
    from test_cache_wire import op_id
    from test_server import expect_error_frame
    from test_session_backlog import Raw

    raw = Raw(server)
    try:
        assert _graph_with_a_source(raw, 9, 64) == 0
        graph = (1 << 62) | 8
        add = struct.pack("<QI", graph, 0) + _copy3d(1, 9, 2, 0, 64) + struct.pack("<Q", 0)
        raw.send(op_id("cuGraphAddMemcpyNode"), add)
        code, msg = expect_error_frame(raw.sock)
        assert code == wg.ERR_MALFORMED and "staging id 9 is in use" in msg, msg
    finally:
        raw.close()


def test_worker_refuses_a_multi_row_host_source(server):
    from test_session_backlog import Raw

    raw = Raw(server)
    try:
        assert _graph_with_a_source(raw, 5, 64, height=2) == 801  # CUDA_ERROR_NOT_SUPPORTED
    finally:
        raw.close()
    server.wait_for_log(r"a memcpy node from the client's memory must copy one row", session=raw.sid)
