"""Graphs built node by node through gpuwire against the stand-in:
tests/programs/graph_build.c adds memset, kernel, device-to-device memcpy,
child-graph and event record/wait nodes and a memory alloc node (whose
address comes back) with its free node, reads their parameters back,
launches the graph twice checking every byte, and changes the exec's memset
and memcpy parameters before launching again. A memcpy node with a side in
the client's host memory is refused with CUDA_ERROR_NOT_SUPPORTED and a log
line: the node copies at each launch, on the server."""

import pytest

from conftest import NOT_BUILT, PROGRAMS_DIR, explain, gw_run


def test_graph_build_program_passes(server):
    program = PROGRAMS_DIR / "graph_build"
    if not program.is_file():
        pytest.skip(NOT_BUILT)
    result = gw_run([str(program)], server=server.address, timeout=120)
    assert result.returncode == 0, explain(result, server)
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == "PASS graph_build", explain(result, server)
    assert "host-side memcpy node: not supported" in lines, explain(result, server)
    assert "cuGraphAddMemcpyNode: a memcpy node with a side in host memory" in result.stderr, explain(result, server)
    # nothing else it uses was refused as unsupported
    assert result.stderr.count("not supported by gpuwire") == 1, explain(result, server)
