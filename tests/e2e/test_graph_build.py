"""Graphs built node by node through gpuwire against the stand-in:
tests/programs/graph_build.c adds memset, kernel, device-to-device memcpy,
child-graph and event record/wait nodes and a memory alloc node (whose
address comes back) with its free node, reads their parameters back,
launches the graph twice checking every byte, and changes the exec's memset
and memcpy parameters before launching again, then clones a small graph
and finds its node in the clone. Memcpy nodes reading the client's pageable
memory copy what it holds at each launch (tests/e2e/test_graph_host_sources.py
has the rest); a node with several rows of host memory is refused with
CUDA_ERROR_NOT_SUPPORTED and a log line."""

import pytest

from conftest import NOT_BUILT, PROGRAMS_DIR, explain, gw_run


def test_graph_build_program_passes(server):
    program = PROGRAMS_DIR / "graph_build"
    if not program.is_file():
        pytest.skip(NOT_BUILT)
    result = gw_run([str(program)], server=server.address, timeout=120)
    assert result.returncode == 0, explain(result, server)
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == "PASS graph_build", explain(result, server)
    assert "host-side memcpy nodes: 2 launches read the host buffers as they were then" in lines, explain(result, server)
    # nothing it uses was refused as unsupported
    assert result.stderr.count("not supported by gpuwire") == 0, explain(result, server)


REFUSALS = r"""
import ctypes
from ctypes import byref, c_int, c_uint64, c_void_p
cuda = ctypes.CDLL("libcuda.so.1")
NOT_SUPPORTED = 801
assert cuda.cuInit(0) == 0
dev, ctx, g, node = c_int(), c_void_p(), c_void_p(), c_void_p()
assert cuda.cuDeviceGet(byref(dev), 0) == 0
assert cuda.cuDevicePrimaryCtxRetain(byref(ctx), dev) == 0
assert cuda.cuCtxSetCurrent(ctx) == 0
assert cuda.cuGraphCreate(byref(g), 0) == 0
d = c_uint64()
assert cuda.cuMemAlloc_v2(byref(d), 4096) == 0
host = ctypes.create_string_buffer(4096)

# CUgraphNodeParams: type (1 memcpy, 3 host, 4 child graph, 5 empty), reserved0[3], a 232-byte union, reserved2
def node_params(kind, body=b""):
    raw = ctypes.create_string_buffer(256)
    ctypes.memmove(raw, ctypes.c_int(kind).value.to_bytes(4, "little"), 4)
    ctypes.memmove(ctypes.addressof(raw) + 16, body, len(body))
    return raw

# a memcpy node reading two rows of host memory (CUDA_MEMCPY3D inside CUDA_MEMCPY_NODE_PARAMS)
import struct
copy3d = struct.pack("<QQQQ", 0, 0, 0, 0)  # srcXInBytes, srcY, srcZ, srcLOD
copy3d += struct.pack("<I4xQQQQQ", 1, ctypes.addressof(host), 0, 0, 0, 2048)  # HOST: srcHost, srcDevice, srcArray, reserved0, srcPitch
copy3d += struct.pack("<Q", 0)  # srcHeight
copy3d += struct.pack("<QQQQ", 0, 0, 0, 0)  # dst x, y, z, LOD
copy3d += struct.pack("<I4xQQQQQ", 2, 0, d.value, 0, 0, 2048)  # DEVICE
copy3d += struct.pack("<QQQQ", 0, 2048, 2, 1)  # dstHeight, WidthInBytes, Height, Depth
assert cuda.cuGraphAddNode_v2(byref(node), g, None, None, 0, node_params(1, struct.pack("<iiQ", 0, 0, ctx.value) + copy3d)) == NOT_SUPPORTED
# a host node through the generic call goes where cuGraphAddHostNode goes: no function is refused
assert cuda.cuGraphAddNode_v2(byref(node), g, None, None, 0, node_params(3)) == 1  # INVALID_VALUE
# a child graph moved into its node
empty, child = c_void_p(), c_void_p()
assert cuda.cuGraphAddEmptyNode(byref(empty), g, None, 0) == 0
# edges of their own kind reach the driver (XLA adds kernel nodes with
# programmatic edges): the node is made, then joined with the edge as given;
# one the driver refuses (a default edge with ports) leaves no node behind
edge = ctypes.create_string_buffer(bytes([0, 0, 1]) + bytes(5), 8)  # type 1: programmatic
assert cuda.cuGraphAddNode_v2(byref(node), g, byref(empty), edge, 1, node_params(5)) == 0
bad = ctypes.create_string_buffer(bytes([0, 1, 0]) + bytes(5), 8)  # to_port 1 on a default edge
assert cuda.cuGraphAddNode_v2(byref(node), g, byref(empty), bad, 1, node_params(5)) == 1  # INVALID_VALUE
assert cuda.cuGraphCreate(byref(child), 0) == 0
assert cuda.cuGraphAddNode_v2(byref(node), g, None, None, 0, node_params(4, struct.pack("<QI", child.value, 1))) == NOT_SUPPORTED
# the default edge and an empty node through the generic call are fine
assert cuda.cuGraphAddNode_v2(byref(node), g, byref(empty), None, 1, node_params(5)) == 0
assert cuda.cuGraphAddNode_v2(byref(node), g, None, None, 0, node_params(4, struct.pack("<QI", child.value, 0))) == 0
assert cuda.cuCtxSynchronize() == 0
print("ok")
"""


def test_what_cannot_be_remoted_is_refused(server):
    import sys

    r = gw_run([sys.executable, "-c", REFUSALS], server=server.address)
    assert r.returncode == 0 and r.stdout.strip() == "ok", explain(r, server)
    for line in ("cuGraphAddMemcpyNode: a memcpy node with a side in host memory",  # the per-type call logs it
                 "cuGraphAddNode_v2: a child graph moved into its node is not supported by gpuwire"):
        assert line in r.stderr, explain(r, server)


def _malformed():
    import struct

    from test_cache_wire import frame, op_id

    copy = b"\0" * 200  # sizeof(CUDA_MEMCPY3D)
    return [
        ("memcpy node truncated", frame(op_id("cuGraphAddMemcpyNode"), struct.pack("<QI", 0, 0) + copy[:100]),
         "truncated"),
        ("memcpy node trailing bytes", frame(op_id("cuGraphMemcpyNodeSetParams"), struct.pack("<Q", 0) + copy + b"x"),
         "trailing"),
        ("alloc node with too many access descriptors",
         frame(op_id("cuGraphAddMemAllocNode"), struct.pack("<QI", 0, 0) + b"\0" * 120 + struct.pack("<I", 65)),  # sizeof(CUDA_MEM_ALLOC_NODE_PARAMS)
         "access descriptors"),
        ("conditional node with no body", frame(op_id("cuGraphAddNode_v2"), struct.pack("<QIQIIQ", 0, 0, 0, 0, 0, 0)),
         "conditional bodies"),
        ("dot print trailing bytes", frame(op_id("cuGraphDebugDotPrint"), struct.pack("<QIB", 0, 0, 1)), "trailing"),
    ]


MALFORMED = _malformed()


@pytest.mark.parametrize("what,data,reason", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_graph_requests_end_only_their_session(server, what, data, reason):
    from test_server import assert_malformed_ends_session

    assert_malformed_ends_session(server, data, reason)


def test_worker_refuses_a_host_side_memcpy_node_from_the_wire(server):
    """A client that skips the library's check still cannot have the driver touch the worker's memory."""
    import struct
    import time

    from gpuwire import protocol
    from test_cache_wire import frame, op_id
    from test_server import good_session, unique_pid

    copy = bytearray(200)  # CUDA_MEMCPY3D
    struct.pack_into("<IxxxxQ", copy, 32, 1, 0x10000)  # srcMemoryType HOST, srcHost: an address in the worker
    struct.pack_into("<I", copy, 120, 4)  # dstMemoryType UNIFIED: not a host source's one row to the device
    struct.pack_into("<QQQ", copy, 176, 64, 1, 1)  # WidthInBytes, Height, Depth
    sock, sid = good_session(server, unique_pid())
    with sock:
        sock.sendall(frame(op_id("cuGraphMemcpyNodeSetParams"), struct.pack("<Q", 0) + bytes(copy)))
        hdr, payload = protocol.recv_frame(sock, time.monotonic() + 15)
        assert hdr.op == protocol.OP_REPLY and struct.unpack_from("<i", payload)[0] == 801, (hdr, payload)
    server.wait_for_log(r"refused a memcpy node whose sides are not both device memory", session=sid)
