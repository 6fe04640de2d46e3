"""cuStreamBeginCaptureToGraph (issue 14: graphConditionalNodes captures into a
graph it made): the stream reports an active capture, ending it hands back
the application's own graph (the same handle), the graph can be destroyed
once, and capturing the legacy stream is refused as natively."""

import json
import sys

from conftest import explain, gw_run

SNIPPET = r"""
import ctypes, json
cu = ctypes.CDLL("libcuda.so.1")
P = ctypes.c_void_p
res = {}
res["init"] = cu.cuInit(0)
ctx = P()
res["ctx"] = cu.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), 0)
cu.cuCtxSetCurrent(ctx)
s, g, out = P(), P(), P()
res["stream"] = cu.cuStreamCreate(ctypes.byref(s), 1)
res["graph"] = cu.cuGraphCreate(ctypes.byref(g), 0)
res["begin"] = cu.cuStreamBeginCaptureToGraph(s, g, None, None, ctypes.c_size_t(0), 0)
st = ctypes.c_int(-1)
res["capturing_rc"] = cu.cuStreamIsCapturing(s, ctypes.byref(st))
res["capturing"] = st.value
res["again"] = cu.cuStreamBeginCaptureToGraph(s, g, None, None, ctypes.c_size_t(0), 0)
res["end"] = cu.cuStreamEndCapture(s, ctypes.byref(out))
res["same_graph"] = out.value == g.value
cu.cuStreamIsCapturing(s, ctypes.byref(st))
res["after"] = st.value
res["legacy"] = cu.cuStreamBeginCaptureToGraph(P(1), g, None, None, ctypes.c_size_t(0), 0)
res["destroy"] = cu.cuGraphDestroy(g)
res["sync"] = cu.cuCtxSynchronize()
print("RESULT " + json.dumps(res))
"""


def test_capture_into_an_existing_graph(server):
    r = gw_run([sys.executable, "-c", SNIPPET], server=server.address, timeout=60)
    assert r.returncode == 0, explain(r, server)
    res = json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")][0][7:])
    assert res["begin"] == 0 and res["capturing_rc"] == 0 and res["capturing"] == 1, res  # ACTIVE
    assert res["again"] == 401, res            # CUDA_ERROR_ILLEGAL_STATE: already capturing
    assert res["end"] == 0 and res["same_graph"], res
    assert res["after"] == 0, res              # NONE
    assert res["legacy"] == 900, res           # CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED
    assert res["destroy"] == 0 and res["sync"] == 0, res
