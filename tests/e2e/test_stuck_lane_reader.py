"""A client that stops reading its copy lanes in the middle of a large
device-to-host copy (here: the process is stopped) cannot hold the worker's
lane writer for ever: after GPUWIRE_WORKER_STUCK_S seconds the worker ends
that lane with a line naming it (native/worker/core/lanes.c gw_lane_put),
the copy fails when the client runs again instead of waiting, the program
exits, and the server serves the next client (issue 14: no hang)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from conftest import GPUWIRE, explain, gpuwire_env, gw_run, start_server

COPIER = r"""
import ctypes, sys, threading, time
cu = ctypes.CDLL("libcuda.so.1")
def ok(r, what):
    if r != 0:
        print(f"{what} -> {r}", flush=True); sys.exit(3)
ctx, d = ctypes.c_void_p(), ctypes.c_uint64()
ok(cu.cuInit(0), "cuInit")
ok(cu.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), 0), "retain")
ok(cu.cuCtxSetCurrent(ctx), "set current")
N = 1 << 30
ok(cu.cuMemAlloc_v2(ctypes.byref(d), ctypes.c_size_t(N)), "alloc")
ok(cu.cuMemsetD8_v2(d, 7, ctypes.c_size_t(N)), "memset")
ok(cu.cuCtxSynchronize(), "sync")
buf = ctypes.create_string_buffer(N)
print("ready", flush=True)
sys.stdin.readline()
t = time.monotonic()
rc = cu.cuMemcpyDtoH_v2(buf, d, ctypes.c_size_t(N))
print(f"COPY {rc} after {time.monotonic() - t:.1f}", flush=True)
"""


def test_a_stopped_client_frees_its_lane_writer_and_the_server_goes_on(tmp_path):
    srv = start_server(tmp_path / "server.log", env={"GPUWIRE_WORKER_STUCK_S": "2"})
    try:
        proc = subprocess.Popen(GPUWIRE + ["run", "--server", srv.address, "--", sys.executable, "-c", COPIER],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=gpuwire_env({"GPUWIRE_LANES": "2"}))
        try:
            assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.poll() is not None else ""
            proc.stdin.write("go\n")
            proc.stdin.flush()
            time.sleep(0.02)  # the copy's pieces are asked for at once; their bytes take far longer
            proc.send_signal(signal.SIGSTOP)
            srv.wait_for_log(r"lane \d: the client read no data frame for 2 s \(GPUWIRE_WORKER_STUCK_S\)",
                             timeout=30)
            proc.send_signal(signal.SIGCONT)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
        copy = [ln for ln in out.splitlines() if ln.startswith("COPY ")]
        # the copy did not complete: it failed (the lane gone), or the session ended under it
        assert copy and not copy[0].startswith("COPY 0 "), out + err
        assert srv.alive()
        r = gw_run([sys.executable, "-c", "import ctypes; print(ctypes.CDLL('libcuda.so.1').cuInit(0))"],
                   server=srv.address, timeout=60)
        assert r.returncode == 0 and r.stdout.strip() == "0", explain(r, srv)
    finally:
        srv.stop()
