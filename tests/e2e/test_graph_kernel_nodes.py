"""Graph kernel nodes through gpuwire: cuGraphAddKernelNode_v2 makes one,
cuGraphKernelNodeGetParams_v2 gives back its launch dimensions and arguments
(kernelParams pointing at copies the client keeps), cuGraphKernelNodeSetParams_v2
changes them, cuGraphExecKernelNodeSetParams_v2 reaches an instantiated graph,
and unknown handles are refused without ending the session. The stand-in's
kernel nodes are bookkeeping only: nothing runs. A malformed request for these
ops ends its session alone."""

import struct
import sys

import pytest

from conftest import ROOT, explain, gw_run
from test_cache_wire import frame, op_id
from test_server import assert_malformed_ends_session

FATBIN = ROOT / "build" / "programs" / "obj" / "driver_api_kernels.fatbin"

SCRIPT = r"""
import ctypes, struct, sys
from ctypes import POINTER, byref, c_float, c_int, c_uint, c_uint64, c_void_p, cast
cuda = ctypes.CDLL("libcuda.so.1")
image = open(sys.argv[1], "rb").read()
INVALID_VALUE, INVALID_HANDLE = 1, 400

class Params(ctypes.Structure):  # CUDA_KERNEL_NODE_PARAMS_v2
    _fields_ = [("func", c_void_p), ("gridDimX", c_uint), ("gridDimY", c_uint), ("gridDimZ", c_uint),
                ("blockDimX", c_uint), ("blockDimY", c_uint), ("blockDimZ", c_uint), ("sharedMemBytes", c_uint),
                ("kernelParams", POINTER(c_void_p)), ("extra", c_void_p), ("kern", c_void_p), ("ctx", c_void_p)]

def dims(p):
    return (p.gridDimX, p.gridDimY, p.gridDimZ, p.blockDimX, p.blockDimY, p.blockDimZ, p.sharedMemBytes)

def args(p):  # da_scale(float *data, float factor, int n)
    kp = p.kernelParams
    return (cast(kp[0], POINTER(c_uint64))[0], cast(kp[1], POINTER(c_float))[0], cast(kp[2], POINTER(c_int))[0])

def params(fn, grid, block, ptr, factor, n, keep):
    vals = [c_uint64(ptr), c_float(factor), c_int(n)]
    arr = (c_void_p * 3)(*[ctypes.addressof(v) for v in vals])
    keep.append((vals, arr))
    return Params(fn, grid, 1, 1, block, 1, 1, 0, arr, None, None, None)

assert cuda.cuInit(0) == 0
dev, ctx, mod, fn = ctypes.c_int(), c_void_p(), c_void_p(), c_void_p()
assert cuda.cuDeviceGet(byref(dev), 0) == 0
assert cuda.cuDevicePrimaryCtxRetain(byref(ctx), dev) == 0
assert cuda.cuCtxSetCurrent(ctx) == 0
assert cuda.cuModuleLoadData(byref(mod), image) == 0
assert cuda.cuModuleGetFunction(byref(fn), mod, b"da_scale") == 0
data = c_uint64()
assert cuda.cuMemAlloc_v2(byref(data), 4096) == 0
keep = []

g, node = c_void_p(), c_void_p()
assert cuda.cuGraphCreate(byref(g), 0) == 0
p = params(fn, 4, 32, data.value, 2.5, 128, keep)
assert cuda.cuGraphAddKernelNode_v2(byref(node), g, None, 0, byref(p)) == 0 and node.value

q = Params()
assert cuda.cuGraphKernelNodeGetParams_v2(node, byref(q)) == 0
assert q.func == fn.value and not q.extra, (q.func, fn.value, q.extra)
assert dims(q) == (4, 1, 1, 32, 1, 1, 0), dims(q)
assert args(q) == (data.value, 2.5, 128), args(q)
first = ctypes.addressof(q.kernelParams.contents)
q2 = Params()
assert cuda.cuGraphKernelNodeGetParams_v2(node, byref(q2)) == 0
assert ctypes.addressof(q2.kernelParams.contents) == first  # nothing changed: the same kept copy

# a dependent empty node, then new parameters for the kernel node
empty = c_void_p()
assert cuda.cuGraphAddEmptyNode(byref(empty), g, (c_void_p * 1)(node.value), 1) == 0
assert cuda.cuGraphKernelNodeGetParams_v2(empty, byref(q2)) == INVALID_VALUE  # not a kernel node
p2 = params(fn, 2, 64, data.value + 256, -1.25, 64, keep)
assert cuda.cuGraphKernelNodeSetParams_v2(node, byref(p2)) == 0
assert cuda.cuGraphKernelNodeGetParams_v2(node, byref(q2)) == 0
assert dims(q2) == (2, 1, 1, 64, 1, 1, 0) and args(q2) == (data.value + 256, -1.25, 64), (dims(q2), args(q2))
assert args(q) == (data.value, 2.5, 128), args(q)  # the earlier answer is still readable, unchanged

# a second kernel node depending on the first, with the arguments of a GetParams answer
node2 = c_void_p()
assert cuda.cuGraphAddKernelNode_v2(byref(node2), g, (c_void_p * 1)(node.value), 1, byref(q2)) == 0
q3 = Params()
assert cuda.cuGraphKernelNodeGetParams_v2(node2, byref(q3)) == 0 and args(q3) == args(q2)

# the executable graph takes new parameters for its nodes; unknown handles are refused
exe = c_void_p()
assert cuda.cuGraphInstantiateWithFlags(byref(exe), g, 0) == 0 and exe.value
p3 = params(fn, 8, 128, data.value, 3.0, 1024, keep)
assert cuda.cuGraphExecKernelNodeSetParams_v2(exe, node, byref(p3)) == 0
assert cuda.cuGraphExecKernelNodeSetParams_v2(c_void_p(0x77770), node, byref(p3)) == INVALID_HANDLE
assert cuda.cuGraphExecKernelNodeSetParams_v2(exe, c_void_p(0x77770), byref(p3)) == INVALID_HANDLE
assert cuda.cuGraphKernelNodeGetParams_v2(c_void_p(0x77770), byref(q3)) == INVALID_HANDLE
assert cuda.cuGraphKernelNodeSetParams_v2(c_void_p(0x77770), byref(p3)) == INVALID_HANDLE
bad = params(c_void_p(0x77770).value, 1, 1, data.value, 1.0, 1, keep)
assert cuda.cuGraphKernelNodeSetParams_v2(node, byref(bad)) == INVALID_HANDLE
# a node of another graph is not the executable graph's
g2, other = c_void_p(), c_void_p()
assert cuda.cuGraphCreate(byref(g2), 0) == 0
assert cuda.cuGraphAddKernelNode_v2(byref(other), g2, None, 0, byref(p3)) == 0
assert cuda.cuGraphExecKernelNodeSetParams_v2(exe, other, byref(p3)) == INVALID_VALUE
# the graph's own node is as it was: the executable graph has its own copy
assert cuda.cuGraphKernelNodeGetParams_v2(node, byref(q3)) == 0 and args(q3) == (data.value + 256, -1.25, 64)

# a node made from a kernel and a context names the kernel's function too, as the driver
# does; that function's id works in later calls (its layout is asked for by id)
lib, kern = c_void_p(), c_void_p()
assert cuda.cuLibraryLoadData(byref(lib), image, None, None, 0, None, None, 0) == 0
assert cuda.cuLibraryGetKernel(byref(kern), lib, b"da_scale") == 0
pk = params(None, 3, 96, data.value, 0.5, 96, keep)
pk.kern, pk.ctx = kern.value, ctx.value
node4 = c_void_p()
assert cuda.cuGraphAddKernelNode_v2(byref(node4), g2, None, 0, byref(pk)) == 0
q4 = Params()
assert cuda.cuGraphKernelNodeGetParams_v2(node4, byref(q4)) == 0
assert q4.kern == kern.value and q4.ctx == ctx.value and q4.func and q4.func != kern.value, (q4.func, q4.kern, q4.ctx)
assert dims(q4) == (3, 1, 1, 96, 1, 1, 0) and args(q4) == (data.value, 0.5, 96), (dims(q4), args(q4))
q4.gridDimX = 5
assert cuda.cuGraphKernelNodeSetParams_v2(node4, byref(q4)) == 0
assert cuda.cuGraphKernelNodeGetParams_v2(node4, byref(q4)) == 0 and q4.gridDimX == 5 and args(q4)[1] == 0.5
pk.func = kern.value  # a kernel handed over as the function: the driver refuses it
assert cuda.cuGraphAddKernelNode_v2(byref(node4), g2, None, 0, byref(pk)) == INVALID_HANDLE

# arguments given as one packed buffer (`extra`) come back through kernelParams
packed = struct.pack("<QfI", data.value + 512, 7.5, 33)
pbuf, psize = ctypes.create_string_buffer(packed, len(packed)), ctypes.c_size_t(len(packed))
extra = (c_void_p * 5)(1, ctypes.addressof(pbuf), 2, ctypes.addressof(psize), 0)  # BUFFER_POINTER, BUFFER_SIZE, END
pe = Params(fn, 1, 1, 1, 16, 1, 1, 0, None, ctypes.addressof(extra), None, None)
node5 = c_void_p()
assert cuda.cuGraphAddKernelNode_v2(byref(node5), g2, None, 0, byref(pe)) == 0
assert cuda.cuGraphKernelNodeGetParams_v2(node5, byref(q4)) == 0 and args(q4) == (data.value + 512, 7.5, 33), args(q4)

# the session carries on
assert cuda.cuCtxSynchronize() == 0
assert cuda.cuGraphExecDestroy(exe) == 0
for x in (g, g2):
    assert cuda.cuGraphDestroy(x) == 0
assert cuda.cuMemFree_v2(data) == 0
print("ok")
"""


def test_kernel_node_parameters_round_trip(server):
    if not FATBIN.exists():
        pytest.skip("build/programs/obj/driver_api_kernels.fatbin is not built (run scripts/setup)")
    r = gw_run([sys.executable, "-c", SCRIPT, str(FATBIN)], server=server.address)
    assert r.returncode == 0 and r.stdout.strip() == "ok", explain(r, server)


def params_block(nbytes: int, claimed: int | None = None) -> bytes:
    """P: function, kernel and context ids, dims, then the parameter bytes."""
    body = struct.pack("<QQQ7I", 0, 0, 0, 1, 1, 1, 1, 1, 1, 0)
    return body + struct.pack("<I", nbytes if claimed is None else claimed) + b"\0" * nbytes


BAD = [
    ("get params truncated", frame(op_id("cuGraphKernelNodeGetParams_v2"), b"\1\2\3"), "truncated"),
    ("get params trailing bytes", frame(op_id("cuGraphKernelNodeGetParams_v2"), b"\0" * 12), "trailing"),
    ("set params over the limit", frame(op_id("cuGraphKernelNodeSetParams_v2"),
                                        struct.pack("<Q", 0) + params_block(32768)), "parameter bytes"),
    ("exec set params short of its bytes", frame(op_id("cuGraphExecKernelNodeSetParams_v2"),
                                                  struct.pack("<QQ", 0, 0) + params_block(8, claimed=64)),
     "truncated"),
    ("add node with too many dependencies", frame(op_id("cuGraphAddKernelNode_v2"),
                                                  struct.pack("<QI", 0, 1 << 30) + params_block(0)),
     "dependencies"),
]


@pytest.mark.parametrize("what,data,reason", BAD, ids=[b[0] for b in BAD])
def test_malformed_kernel_node_requests_end_only_their_session(server, what, data, reason):
    assert_malformed_ends_session(server, data, reason)
