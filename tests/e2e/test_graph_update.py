"""cuGraphExecUpdate_v2 through gpuwire: the result info's node handles come
back as the ids the client knows (the node cuGraphAddEmptyNode returned), on
failure as well as on success. The stand-in's graphs are bookkeeping only."""

import sys

from conftest import explain, gw_run

SCRIPT = r"""
import ctypes
cuda = ctypes.CDLL("libcuda.so.1")
SUCCESS, TOPOLOGY_CHANGED, UPDATE_FAILURE, INVALID_HANDLE = 0, 2, 910, 400

class Info(ctypes.Structure):
    _fields_ = [("result", ctypes.c_int), ("errorNode", ctypes.c_void_p), ("errorFromNode", ctypes.c_void_p)]

assert cuda.cuInit(0) == 0
dev, ctx = ctypes.c_int(), ctypes.c_void_p()
assert cuda.cuDeviceGet(ctypes.byref(dev), 0) == 0
assert cuda.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) == 0
assert cuda.cuCtxSetCurrent(ctx) == 0

def graph(n):
    g, nodes = ctypes.c_void_p(), []
    assert cuda.cuGraphCreate(ctypes.byref(g), 0) == 0
    for i in range(n):
        node = ctypes.c_void_p()
        deps = (ctypes.c_void_p * 1)(nodes[-1]) if nodes else None
        assert cuda.cuGraphAddEmptyNode(ctypes.byref(node), g, deps, 1 if nodes else 0) == 0 and node.value
        nodes.append(node.value)
    return g, nodes

g1, n1 = graph(1)
exe = ctypes.c_void_p()
assert cuda.cuGraphInstantiateWithFlags(ctypes.byref(exe), g1, 0) == 0 and exe.value
g2, n2 = graph(2)
info = Info(99, 1, 1)
assert cuda.cuGraphExecUpdate_v2(exe, g2, ctypes.byref(info)) == UPDATE_FAILURE
assert info.result == TOPOLOGY_CHANGED and info.errorNode == n2[-1] and not info.errorFromNode, \
    (info.result, info.errorNode, n2)
g3, n3 = graph(1)
info = Info(99, 1, 1)
assert cuda.cuGraphExecUpdate_v2(exe, g3, ctypes.byref(info)) == 0
assert info.result == SUCCESS and not info.errorNode and not info.errorFromNode
assert cuda.cuGraphExecUpdate_v2(ctypes.c_void_p(0x77770), g3, ctypes.byref(info)) == INVALID_HANDLE
for g in (g1, g2, g3):
    assert cuda.cuGraphDestroy(g) == 0
assert cuda.cuGraphExecDestroy(exe) == 0
print("ok")
"""


def test_graph_exec_update_maps_node_handles(server):
    r = gw_run([sys.executable, "-c", SCRIPT], server=server.address)
    assert r.returncode == 0 and r.stdout.strip() == "ok", explain(r, server)
