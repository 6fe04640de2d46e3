"""cuCtxSetCurrent of the context already current does nothing natively, so
the client sends nothing for it. It posted a request each time: 335 ns of
the application's time on the 2-core development machine (39 ns now; the
stand-in library called directly took 37), plus a frame and a worker job.
A change of context still reaches the server, and so does the first set
in a forked child, whose new session knows no current context
(test_multi_server's fork tests)."""

from __future__ import annotations

import re
import sys

from conftest import explain, gw_run, start_server
from test_mapped_memory import PRELUDE

SCRIPT = PRELUDE + r"""
import sys
repeats = int(sys.argv[1])
codes = {cuda.cuCtxSetCurrent(ctx) for _ in range(repeats)}
out = ctypes.c_void_p()
# away and back: both reach the server, and the context is current again
away = cuda.cuCtxSetCurrent(None), cuda.cuCtxGetCurrent(ctypes.byref(out)), out.value
back = cuda.cuCtxSetCurrent(ctx), cuda.cuCtxGetCurrent(ctypes.byref(out)), out.value == ctx.value
p = ctypes.c_uint64()
print("codes", sorted(codes), "away", *away, "back", *back,
      "alloc", cuda.cuMemAlloc_v2(ctypes.byref(p), 64), "sync", cuda.cuCtxSynchronize())
"""


def test_setting_the_current_context_again_sends_nothing(tmp_path):
    srv = start_server(tmp_path / "server.log")
    try:
        runs = []
        for repeats in (1, 1000):
            r = gw_run([sys.executable, "-c", SCRIPT, str(repeats)], server=srv.address, timeout=60)
            assert r.returncode == 0, explain(r, srv)
            assert "codes [0] away 0 0 None back 0 0 True alloc 0 sync 0" in r.stdout.split("\n"), explain(r, srv)
            runs.append(r)
    finally:
        srv.stop()
    log = srv.log_path.read_text(errors="replace")
    counts = [int(n) for n in re.findall(r'msg="client disconnected after (\d+) requests"', log)]
    assert len(counts) == 2, log[-3000:]  # one per run, in order
    once, many = counts
    assert many == once, (once, many)
