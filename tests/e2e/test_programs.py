"""Every built CUDA test program runs unmodified through `gpuwire run` against
the stand-in server, passes, and leaves the client's statistics behind."""

import json

import pytest

from conftest import NOT_BUILT, built_programs, explain, gw_run

PROGRAMS = built_programs()
# programs whose default run needs a GPU's behaviour the stand-in does not model
STANDIN_ARGS = {"graph_host_sources": ["--standin"]}


@pytest.mark.parametrize("program", PROGRAMS or [None], ids=[p.name for p in PROGRAMS] or ["not-built"])
def test_program_passes_through_gpuwire(program, server, tmp_path):
    if program is None:
        pytest.skip(NOT_BUILT)
    stats_path = tmp_path / "stats.json"
    args = next((a for prefix, a in STANDIN_ARGS.items() if program.name.startswith(prefix + "_")), [])
    result = gw_run([str(program), *args], server=server.address, stats=stats_path, timeout=180)
    assert result.returncode == 0, explain(result, server)
    lines = result.stdout.strip().splitlines()
    assert lines and lines[-1].startswith("PASS"), "last line is not PASS\n" + explain(result, server)

    assert stats_path.is_file(), "GPUWIRE_STATS was set but the client library wrote no stats file"
    stats = json.loads(stats_path.read_text())
    for key in ("calls", "round_trips", "bytes_to_server", "bytes_from_server"):
        assert isinstance(stats.get(key), int) and stats[key] >= 0, f"stats[{key!r}] = {stats.get(key)!r}"
    assert stats["calls"] > 0 and stats["round_trips"] > 0
    assert stats["bytes_to_server"] > 0 and stats["bytes_from_server"] > 0
    assert isinstance(stats.get("by_function"), dict) and stats["by_function"], stats.get("by_function")
    assert server.alive()
