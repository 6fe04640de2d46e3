"""A second witness for round-trip counts (issue 20): every figure in the
tests and docs comes from the client's own counter (GPUWIRE_STATS), so a
change that made calls wait *and* left them out of that count would pass.
The worker counts the replies it sends in the session-stats block, which the
server sums into its status. For each program here: the worker's count equals
the REPLY frames the client read (counted where frames arrive, apart from the
round-trip counting), and the client's round trips equal those replies less
the ones that followed a burst's first (a burst of pipelined requests, a large
device-to-host copy in pieces, waits once). A wait left out of the round-trip
count shows as a reply with no round trip.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from conftest import GPUWIRE, PROGRAMS_DIR, explain, gpuwire_env, gw_run, start_server

PROGRAMS = ["vector_add_shared", "memcpy_kinds_shared", "streams_events_shared", "driver_api", "multi_module_static"]


def server_round_trips(address: str, sessions_ended: int, timeout: float = 15.0) -> int:
    """The server's total of replies its workers sent, once `sessions_ended` sessions have ended."""
    deadline = time.monotonic() + timeout
    while True:
        r = subprocess.run(GPUWIRE + ["status", "--server", address, "--json", "--bytes", "0"],
                           capture_output=True, text=True, env=gpuwire_env(), timeout=30)
        assert r.returncode == 0, r.stderr
        totals = json.loads(r.stdout)["status"]["totals"]
        ended = totals["sessions_started"] - totals["sessions_active"] - totals["queued"]
        if ended >= sessions_ended and totals["sessions_active"] == 0:
            return totals["round_trips"]
        assert time.monotonic() < deadline, f"sessions did not end: {totals}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def own_server(tmp_path_factory):
    """A server of this module's only: its totals count these programs and nothing else."""
    srv = start_server(tmp_path_factory.mktemp("witness") / "server.log")
    yield srv
    srv.stop()


def test_worker_and_client_count_the_same_round_trips(own_server, tmp_path):
    before = server_round_trips(own_server.address, 0)
    ran = 0
    for name in PROGRAMS:
        exe = PROGRAMS_DIR / name
        if not exe.exists():
            pytest.skip(f"{exe} not built (make -C tests/programs)")
        stats = tmp_path / f"{name}.json"
        result = gw_run([str(exe)], own_server.address, stats=stats)
        assert result.returncode == 0, explain(result, own_server)
        ran += 1
        st = json.loads(stats.read_text())
        after = server_round_trips(own_server.address, ran)
        worker = after - before
        assert st["round_trips"] > 0, name
        assert worker == st["replies"], f"{name}: its worker sent {worker} replies, the client read {st['replies']}"
        assert st["round_trips"] == st["replies"] - st["burst_replies"], (
            f"{name}: {st['round_trips']} round trips counted for {st['replies']} replies "
            f"({st['burst_replies']} inside bursts)")
        before = after
