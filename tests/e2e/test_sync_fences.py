"""Stream synchronizes that need not wait (issue 20, client/state/stream_fences.c):
a synchronize of a stream that holds only work that cannot fail later
(host-to-device copies, memsets) is posted, not waited for; one behind a kernel
or a copy into host memory still waits, and errors still surface there.
Round trips per token are the slope between two runs, so start-up cancels out."""

import json

import pytest

from conftest import ROOT, explain, gw_run

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
    """Seven synchronizes of the per-thread stream after input copies and one of
    the compute stream after the kernel and the result's copy: one round trip."""
    assert per_token(server, tmp_path, "decode") == 1.0
    stats = run(server, tmp_path, "decode", 4)
    # every synchronize was made; only the compute stream's waited
    assert stats["by_function"]["cuStreamSynchronize"] == 4 * 8, stats["by_function"]
    assert stats["round_trips_by_function"]["cuStreamSynchronize"] == 4, stats["round_trips_by_function"]


def test_synchronize_behind_legacy_stream_work_still_waits(server, tmp_path):
    """The per-thread stream waits for the legacy stream's unfinished kernel, so
    its synchronize may have an error to report: it waits, as the legacy one does."""
    assert per_token(server, tmp_path, "blocking", "cuStreamSynchronize") == 2.0


def test_fault_still_reported_at_its_streams_synchronize(server, tmp_path):
    run(server, tmp_path, "fault")
