"""Issue 14 against the CPU stand-in: host functions run in stream order
through the server (docs/host-functions.md). The worker's driver calls a
trampoline that has the client run the function on its callback thread and
waits for it to return: graphs with host nodes run on the server, and
cuLaunchHostFunc / cuStreamAddCallback are posted, not waited for."""

import json

import pytest

from conftest import ROOT, explain, gw_run

PROGRAM = ROOT / "build" / "programs" / "host_functions_shared"
OTHER = ROOT / "build" / "programs" / "vector_add_shared"


def run_mode(server, tmp_path, *args, timeout=120):
    if not PROGRAM.exists():
        pytest.skip("build/programs/host_functions_shared is not built (run scripts/setup)")
    stats_path = tmp_path / ("-".join(args) + ".json")
    result = gw_run([str(PROGRAM), *args], server=server.address, stats=stats_path, timeout=timeout)
    return result, stats_path


def passes(server, tmp_path, *args):
    result, stats_path = run_mode(server, tmp_path, *args)
    assert result.returncode == 0, explain(result, server)
    assert result.stdout.strip().splitlines()[-1] == "PASS host_functions", explain(result, server)
    return json.loads(stats_path.read_text())


def test_graph_kernel_host_node_kernel_in_order_three_launches(server, tmp_path):
    """The host node reads the first kernel's result (copied down before it)
    and not yet the second's, and its write to host memory is not overwritten
    by the copy after it; parameters read back and change on the exec."""
    stats = passes(server, tmp_path, "graph")
    assert stats["by_function"].get("cuGraphAddHostNode") == 1, stats["by_function"]
    assert stats["by_function"].get("cuGraphLaunch", 0) == 4, stats["by_function"]


def test_host_functions_are_posted_without_round_trips(server, tmp_path):
    """Ten or forty host functions between posted kernels and copies: each runs
    once, in order, after the copy before it landed, and the round trips do not
    grow with their number (the old path synchronized the stream per call)."""
    few = passes(server, tmp_path, "stream", "10")
    many = passes(server, tmp_path, "stream", "40")
    assert many["by_function"].get("cuLaunchHostFunc", 0) == 40, many["by_function"]
    assert many["round_trips"] == few["round_trips"], (few["round_trips"], many["round_trips"])
    assert many["round_trips_by_function"].get("cuLaunchHostFunc", 0) == 0, many["round_trips_by_function"]


def test_host_function_runs_while_the_program_waits_on_its_own_condition(server, tmp_path):
    """No synchronize reads the stream: the client's callback thread reads the
    worker's request itself (the drainer's one-second pause is not needed)."""
    passes(server, tmp_path, "wait")


def test_host_function_reads_mapped_memory_a_kernel_wrote(server, tmp_path):
    """While mapped memory exists, a stream's host function takes the
    synchronous way (a page the device wrote is fetched by a request that
    would wait behind the stream): it still sees the kernel's write."""
    stats = passes(server, tmp_path, "mapped")
    # the program's two synchronizes and the host function's own
    assert stats["round_trips_by_function"].get("cuStreamSynchronize", 0) == 3, stats["round_trips_by_function"]


def test_session_dying_with_host_functions_pending(server, tmp_path):
    """The process ends inside a host function with more queued behind it: the
    worker's waiting trampoline is let go when the session closes, the server
    stays up and the next client is served."""
    result, _ = run_mode(server, tmp_path, "die")
    assert "inside a host function, ending the process" in result.stdout, explain(result, server)
    assert "PASS" not in result.stdout, explain(result, server)
    for _ in range(2):
        ok = gw_run([str(PROGRAM), "stream", "5"], server=server.address, timeout=60)
        assert ok.returncode == 0 and "PASS host_functions" in ok.stdout, explain(ok, server)
    if OTHER.exists():
        ok = gw_run([str(OTHER)], server=server.address, timeout=60)
        assert ok.returncode == 0, explain(ok, server)
    server.wait_for_log("not answered: the session is over", timeout=15)
    assert "still inside the driver" not in server.log_text(), server.log_text()[-3000:]
    assert server.alive()


def _hostile():
    import struct

    from gpuwire import wire_generated as wg
    from test_cache_wire import frame, op_id

    return [
        ("an answer for a call nobody waits for", frame(wg.OP_HOST_RETURNED, struct.pack("<Q", 99)),
         "which no host function waits for"),
        ("an answer of the wrong size", frame(wg.OP_HOST_RETURNED, struct.pack("<QB", 1, 0)),
         "HOST_RETURNED of 9 bytes"),
        ("a host function with callback id 0", frame(op_id("cuLaunchHostFunc"), struct.pack("<QQI", 0, 0, 0)),
         "callback id 0"),
        ("a host node with callback id 0", frame(op_id("cuGraphAddHostNode"), struct.pack("<QIQ", 0, 0, 0)),
         "callback id 0"),
        ("a host node truncated", frame(op_id("cuGraphAddHostNode"), struct.pack("<QI", 0, 0)), "truncated"),
    ]


HOSTILE = _hostile()


@pytest.mark.parametrize("what,data,reason", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_host_function_frames_end_only_their_session(server, what, data, reason):
    from test_server import assert_malformed_ends_session

    assert_malformed_ends_session(server, data, reason)
