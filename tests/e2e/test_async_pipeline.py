"""Issue 3 against the CPU stand-in: asynchronous calls travel batched and the
network is paid where the application waits, with native semantics kept
(stream order, deferred and sticky errors, callbacks, threads)."""

import json
import subprocess
import time

import pytest

from conftest import GPUWIRE, ROOT, explain, gpuwire_env, gw_python_client, gw_run, start_server

PROGRAM = ROOT / "build" / "programs" / "async_pipeline_shared"


def run_mode(server, tmp_path, mode):
    if not PROGRAM.exists():
        pytest.skip("build/programs/async_pipeline_shared is not built (run scripts/setup)")
    stats_path = tmp_path / f"{mode}.json"
    result = gw_run([str(PROGRAM), mode], server=server.address, stats=stats_path, timeout=180)
    assert result.returncode == 0, explain(result, server)
    assert result.stdout.strip().splitlines()[-1] == f"PASS async_pipeline {mode}", explain(result, server)
    return json.loads(stats_path.read_text())


def test_ten_thousand_async_calls_make_a_handful_of_round_trips(server, tmp_path):
    stats = run_mode(server, tmp_path, "many")
    launches = stats["by_function"].get("cuLaunchKernel", 0) + stats["by_function"].get("cuLaunchKernel_ptsz", 0)
    assert launches == 10000, stats["by_function"]
    # Start-up (init, context, allocation, module load, first layout) costs a
    # fixed handful; the 10,000 launches, memsets and event records none.
    baseline = run_mode(server, tmp_path, "sticky")["round_trips"]
    assert stats["round_trips"] <= baseline + 5, (stats["round_trips"], baseline)


def test_faulting_kernel_is_reported_at_the_next_synchronize_and_sticks(server, tmp_path):
    run_mode(server, tmp_path, "sticky")


def test_host_callbacks_run_in_stream_order_after_copies_land(server, tmp_path):
    run_mode(server, tmp_path, "callbacks")


def test_threads_with_their_own_streams(server, tmp_path):
    run_mode(server, tmp_path, "threads")


def test_one_threads_synchronize_does_not_stall_another_threads_calls(server, tmp_path):
    """A thread waits in cudaStreamSynchronize behind a two-second kernel while
    another thread makes 20 calls that wait for replies: they come back at once."""
    run_mode(server, tmp_path, "nostall")


POSTER = r"""
import ctypes, sys
cu = ctypes.CDLL("libcuda.so.1")
assert cu.cuInit(0) == 0
dev, ctx, buf = ctypes.c_int(), ctypes.c_void_p(), ctypes.c_uint64()
assert cu.cuDeviceGet(ctypes.byref(dev), 0) == 0
assert cu.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) == 0
assert cu.cuCtxSetCurrent(ctx) == 0
assert cu.cuMemAlloc_v2(ctypes.byref(buf), ctypes.c_size_t(4096)) == 0
memset = lambda: cu.cuMemsetD8Async(ctypes.c_uint64(buf.value), ctypes.c_ubyte(1), ctypes.c_size_t(4096), None)
assert memset() == 0
assert cu.cuCtxSynchronize() == 0
print("ready", flush=True)
import time
for line in sys.stdin:  # "N GAP": post N memsets GAP seconds apart and wait for nothing
    n, gap = line.split()
    for _ in range(int(n)):
        assert memset() == 0
        time.sleep(float(gap))
    print("posted", flush=True)
"""


def test_posted_calls_leave_without_a_synchronize(server):
    """Calls that wait for nothing still reach the server within the flush bound
    (GPUWIRE_FLUSH_US): a burst after a quiet spell (the client's flusher asleep,
    woken by the burst's first call), and a trickle whose last calls only the
    flusher's own ticks can send."""
    def calls() -> int:
        r = subprocess.run(GPUWIRE + ["status", "--json", "--server", server.address, "--bytes", "0", "--rounds", "1"],
                           capture_output=True, text=True, timeout=60, env=gpuwire_env())
        assert r.returncode == 0, r.stderr
        mine = [s for s in json.loads(r.stdout)["status"]["sessions"] if s.get("pid") == proc.pid and "calls" in s]
        return mine[0]["calls"] if mine else 0

    def post_and_see(n, want, gap=0.0):
        proc.stdin.write(f"{n} {gap}\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "posted"
        deadline = time.monotonic() + 15
        while (got := calls()) < want:
            assert time.monotonic() < deadline, f"{got} calls at the server, want {want}: posted calls were stranded"
            time.sleep(0.1)

    proc = gw_python_client(server.address, POSTER)
    try:
        base = 0
        deadline = time.monotonic() + 15
        while not base:  # the session appears in status once its worker reports
            base = calls()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        post_and_see(40, base + 40)  # after start-up's quiet spell: the flusher sleeps
        post_and_see(40, base + 80, gap=0.002)  # the flusher awake throughout
    finally:
        proc.stdin.close()
        proc.wait(30)
    assert proc.returncode == 0, proc.stderr.read()


@pytest.mark.parametrize("spin", ["300", "lots"])
def test_job_threads_spinning_by_the_clock_run_the_same(tmp_path, spin):
    """GPUWIRE_JOB_SPIN_US on the server: a job thread with nothing to run
    spins that long by the clock before it sleeps (the default on 8 or more
    cores; CI's machine has fewer). Threads with their own streams and a
    thread's synchronize beside another's calls behave the same; a value
    that is not a number of microseconds is named in the worker's log and the
    default is used."""
    srv = start_server(tmp_path / "server.log", env={"GPUWIRE_JOB_SPIN_US": spin})
    try:
        run_mode(srv, tmp_path, "threads")
        run_mode(srv, tmp_path, "many")
    finally:
        srv.stop()
    log = (tmp_path / "server.log").read_text(errors="replace")
    assert ("GPUWIRE_JOB_SPIN_US=lots is not a number" in log) == (spin == "lots"), log[-2000:]
