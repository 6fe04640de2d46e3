"""cuStreamGetCaptureInfo (v1, v2, v3): outside any capture the client answers
"not capturing" with no round trip (cuBLAS and PyTorch ask before their work);
during a capture the server's driver answers, and the graph it names is the
one cuStreamEndCapture then returns."""

import json
import sys

from conftest import explain, gw_run

SCRIPT = r"""
import ctypes, sys
cuda = ctypes.CDLL("libcuda.so.1")
n = int(sys.argv[1])
NONE, ACTIVE = 0, 1
assert cuda.cuInit(0) == 0
dev, ctx, s = ctypes.c_int(), ctypes.c_void_p(), ctypes.c_void_p()
assert cuda.cuDeviceGet(ctypes.byref(dev), 0) == 0
assert cuda.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) == 0
assert cuda.cuCtxSetCurrent(ctx) == 0
assert cuda.cuStreamCreate(ctypes.byref(s), 0) == 0
st, cid, g, deps, edges, num = (ctypes.c_int(7), ctypes.c_uint64(), ctypes.c_void_p(), ctypes.c_void_p(),
                                ctypes.c_void_p(), ctypes.c_size_t(99))
for _ in range(n):
    assert cuda.cuStreamGetCaptureInfo_v3(s, ctypes.byref(st), ctypes.byref(cid), None, None, None, None) == 0
    assert st.value == NONE, st.value
    assert cuda.cuStreamGetCaptureInfo(s, ctypes.byref(st), None) == 0 and st.value == NONE
assert cuda.cuStreamGetCaptureInfo_v3(s, None, None, None, None, None, None) == 1  # status is required
if "--capture" in sys.argv:
    assert cuda.cuStreamBeginCapture_v2(s, 0) == 0
    assert cuda.cuStreamGetCaptureInfo_v3(s, ctypes.byref(st), ctypes.byref(cid), ctypes.byref(g),
                                          ctypes.byref(deps), ctypes.byref(edges), ctypes.byref(num)) == 0
    assert st.value == ACTIVE and cid.value != 0 and g.value and num.value == 0, (st.value, cid.value, g.value, num.value)
    st2, cid2, g2, num2 = ctypes.c_int(), ctypes.c_uint64(), ctypes.c_void_p(), ctypes.c_size_t(5)
    assert cuda.cuStreamGetCaptureInfo_v2(s, ctypes.byref(st2), ctypes.byref(cid2), ctypes.byref(g2), None,
                                          ctypes.byref(num2)) == 0
    assert (st2.value, cid2.value, g2.value, num2.value) == (ACTIVE, cid.value, g.value, 0)
    assert cuda.cuStreamIsCapturing(s, ctypes.byref(st2)) == 0 and st2.value == ACTIVE
    ended = ctypes.c_void_p()
    assert cuda.cuStreamEndCapture(s, ctypes.byref(ended)) == 0
    assert ended.value == g.value, (ended.value, g.value)
    assert cuda.cuStreamGetCaptureInfo_v3(s, ctypes.byref(st), None, None, None, None, None) == 0
    assert st.value == NONE
    assert cuda.cuGraphDestroy(ended) == 0
assert cuda.cuStreamDestroy_v2(s) == 0
print("ok")
"""


def run(server, tmp_path, *args):
    stats = tmp_path / f"s{'_'.join(args)}.json"
    r = gw_run([sys.executable, "-c", SCRIPT, *args], server=server.address, stats=stats)
    assert r.returncode == 0 and r.stdout.strip() == "ok", explain(r, server)
    return json.loads(stats.read_text())["round_trips"]


def test_outside_a_capture_the_answer_costs_no_round_trip(server, tmp_path):
    assert run(server, tmp_path, "2") == run(server, tmp_path, "300")


def test_during_a_capture_the_driver_answers(server, tmp_path):
    run(server, tmp_path, "1", "--capture")
