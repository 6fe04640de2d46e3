"""A live client that waits for nothing for a while is never taken for one that
stopped reading (issue 18, finding 1's stall timeout): frames the worker sends
unasked (here the module information of 60,000 posted module loads, about
15 MB, more than the sockets' buffers hold) are read by the client library's
drainer within a second even while no thread of the application waits for a
reply, so the worker's writes never stall and the session outlives the
server's --client-stall-timeout. Without the drainer the worker ends the
session after the stall timeout and the application's next call fails."""

import sys

from conftest import PROGRAMS_DIR, explain, gw_run, start_server

STALL_S = 2
LOADS = r"""
import ctypes, sys, time
cu = ctypes.CDLL("libcuda.so.1")
img = open(sys.argv[1], "rb").read()
ctx = ctypes.c_void_p()
assert cu.cuInit(0) == 0 and cu.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), 0) == 0
assert cu.cuCtxSetCurrent(ctx) == 0
buf = ctypes.create_string_buffer(img, len(img))
for i in range(int(sys.argv[2])):   # posted: none of these waits
    m = ctypes.c_void_p()
    r = cu.cuModuleLoadData(ctypes.byref(m), buf)
    assert r == 0, (i, r)
time.sleep(float(sys.argv[3]))      # CPU work elsewhere, no call waiting
assert cu.cuCtxSynchronize() == 0
print("ok")
"""


def test_client_busy_elsewhere_outlives_the_stall_timeout(tmp_path):
    image = PROGRAMS_DIR / "obj" / "kernel_attrs.cubin"  # under the content cache's threshold: sent each time
    srv = start_server(tmp_path / "server.log", extra_args=("--client-stall-timeout", str(STALL_S)))
    try:
        r = gw_run([sys.executable, "-c", LOADS, str(image), "60000", str(2.5 * STALL_S)], server=srv.address,
                   timeout=120)
        assert r.returncode == 0 and r.stdout.strip() == "ok", explain(r, srv)
        assert "stall timeout" not in srv.log_text()
    finally:
        srv.stop()
