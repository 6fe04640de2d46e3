"""Stream synchronizes that need not wait (issue 20, client/state/stream_fences.c):
a synchronize of a stream that holds only work that cannot fail later
(host-to-device copies, memsets) is posted, not waited for; one behind a kernel
or a copy into host memory still waits, and errors still surface there.
Round trips per token are the slope between two runs, so start-up cancels out."""

import json
import re

import pytest

from conftest import ROOT, explain, gw_run, start_server

PROGRAM = ROOT / "build" / "programs" / "sync_fences_shared"


def run(server, tmp_path, mode, tokens=None):
    if not PROGRAM.exists():
        pytest.skip("build/programs/sync_fences_shared is not built (run scripts/setup)")
    args = [str(PROGRAM), mode] + ([str(tokens)] if tokens else [])
    stats_path = tmp_path / f"{mode}-{tokens}.json"
    result = gw_run(args, server=server.address, stats=stats_path, timeout=120)
    assert result.returncode == 0, explain(result, server)
    assert result.stdout.strip().splitlines()[-1] == f"PASS sync_fences {mode}", explain(result, server)
    return json.loads(stats_path.read_text())


def per_token(server, tmp_path, mode, function=None):
    a, b = run(server, tmp_path, mode, 4), run(server, tmp_path, mode, 12)
    if function:
        return (b["round_trips_by_function"].get(function, 0) - a["round_trips_by_function"].get(function, 0)) / 8
    return (b["round_trips"] - a["round_trips"]) / 8


def test_decode_shaped_token_waits_once(server, tmp_path):
    """Seven synchronizes of the per-thread stream after input copies, six of
    the idle compute stream between them, and one of the compute stream after
    the kernel and the result's copy: one round trip."""
    assert per_token(server, tmp_path, "decode") == 1.0
    stats = run(server, tmp_path, "decode", 4)
    # every synchronize was made; the compute stream's waited, and the very
    # first one (start-up posted calls that may have failed: stream creation, module load)
    assert stats["by_function"]["cuStreamSynchronize"] == 4 * 14, stats["by_function"]
    assert stats["round_trips_by_function"]["cuStreamSynchronize"] == 4 + 1, stats["round_trips_by_function"]


def test_worker_skips_needless_posted_synchronizes(server, tmp_path):
    """Of a token's thirteen posted synchronizes (llama.cpp's pattern: the
    per-thread stream after each input copy, the idle compute stream after
    each of those, the per-thread stream once more), the worker runs three:
    the first of each stream in the token's run of jobs, and the last of the
    per-thread stream after a copy (the kernel on the compute stream reads the
    inputs, so it must hold). Four are covered by that last one, six find
    their stream idle (engine/sync_fold.c). Every value the program checks is
    still right."""
    run(server, tmp_path, "decode", 4)
    starts = [ln for ln in server.log_lines() if "prog=sync_fences" in ln and "session start" in ln]
    sid = re.search(r" session=(\d+)( |$)", starts[-1]).group(1)
    m = server.wait_for_log(r"posted stream synchronizes skipped \(stream idle, or a later one covers them\): (\d+)",
                            session=sid)
    # a token's frames reach the worker in one write, so one run of jobs holds
    # them; a run cut short (its thread started before the rest was read) skips fewer
    assert 10 <= int(m.group(1)) <= 4 * 10, m.string


def test_sync_skip_off_runs_every_posted_synchronize(tmp_path):
    """GPUWIRE_SYNC_SKIP=0 in the server's environment (an A/B switch): the
    worker skips none; the session ends without the skip count."""
    srv = start_server(tmp_path / "server.log", env={"GPUWIRE_SYNC_SKIP": "0"})
    try:
        run(srv, tmp_path, "decode", 4)
        srv.wait_for_log(r"session end")
        assert not [ln for ln in srv.log_lines() if "posted stream synchronizes skipped" in ln], srv.log_lines()
    finally:
        srv.stop()


def test_synchronize_behind_legacy_stream_work_still_waits(server, tmp_path):
    """The per-thread stream waits for the legacy stream's unfinished kernel, so
    its synchronize may have an error to report: it waits, as the legacy one does."""
    assert per_token(server, tmp_path, "blocking", "cuStreamSynchronize") == 2.0


def test_fault_still_reported_at_its_streams_synchronize(server, tmp_path):
    run(server, tmp_path, "fault")


MANY_STREAMS = r"""
import ctypes, sys
cu = ctypes.CDLL("libcuda.so.1")
def ok(r, what):
    if r != 0:
        print(f"{what} -> {r}"); sys.exit(3)
ctx, d = ctypes.c_void_p(), ctypes.c_uint64()
ok(cu.cuInit(0), "cuInit")
ok(cu.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), 0), "retain")
ok(cu.cuCtxSetCurrent(ctx), "set current")
ok(cu.cuMemAlloc_v2(ctypes.byref(d), 64), "alloc")
buf = ctypes.create_string_buffer(64)
streams = [ctypes.c_void_p() for _ in range(int(sys.argv[1]))]
for s in streams:
    ok(cu.cuStreamCreate(ctypes.byref(s), 1), "stream")  # non-blocking
ok(cu.cuCtxSynchronize(), "sync after the creations")  # (a creation may fail: this collects it)
for s in streams:
    ok(cu.cuMemcpyHtoDAsync_v2(d, buf, ctypes.c_size_t(64), s), "copy")
    ok(cu.cuStreamSynchronize(s), "sync")
for s in streams:
    ok(cu.cuStreamDestroy_v2(s), "destroy")
ok(cu.cuCtxSynchronize(), "last sync")
print("ok")
"""


def test_streams_beyond_the_table_still_post_their_synchronizes(server, tmp_path):
    """A program that makes and drops streams by the hundred (more than the 512
    the client tracks at once): idle streams give their records way, so each
    synchronize after a copy still posts (the round trips do not grow with the
    number of streams)."""
    import sys
    counts = []
    for n in (10, 700):
        stats = tmp_path / f"streams-{n}.json"
        r = gw_run([sys.executable, "-c", MANY_STREAMS, str(n)], server=server.address, stats=stats, timeout=120)
        assert r.returncode == 0 and r.stdout.strip() == "ok", explain(r, server)
        counts.append(json.loads(stats.read_text())["round_trips_by_function"].get("cuStreamSynchronize", 0))
    assert counts == [0, 0], counts
