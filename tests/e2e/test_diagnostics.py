"""The diagnostics that say where a slow program's time goes (docs/benchmarks.md,
"Where the time goes"): waiting time in GPUWIRE_STATS, the client's sampler, the
sampler preloaded alone, and the worker's per-op profile."""

import json
import os
import re
import subprocess
import sys

from conftest import ROOT, built_programs, explain, gw_run, native_client_lib, start_server


def program(name: str):
    return next(p for p in built_programs() if p.name == name)


def test_stats_say_how_long_round_trips_waited(server, tmp_path):
    stats = tmp_path / "stats.json"
    r = gw_run([str(program("vector_add_shared"))], server=server.address, stats=stats)
    assert r.returncode == 0, explain(r, server)
    s = json.loads(stats.read_text())
    by = s["round_trip_seconds_by_function"]
    assert set(by) == set(s["round_trips_by_function"]), (by, s["round_trips_by_function"])
    assert s["round_trip_seconds"] > 0 and all(t >= 0 for t in by.values())
    assert abs(sum(by.values()) - s["round_trip_seconds"]) <= 1e-3 + 0.01 * s["round_trip_seconds"]
    assert s["batches_sent"] >= 1 and s["batch_send_seconds"] >= 0


def test_sampler_profiles_the_main_thread(server, tmp_path):
    out = tmp_path / "samples.txt"
    r = gw_run([str(program("vector_add_shared"))], server=server.address,
               env={"GPUWIRE_SAMPLE": str(out), "GPUWIRE_SAMPLE_US": "200", "GPUWIRE_SAMPLE_WATCH": "recv,main"})
    assert r.returncode == 0, explain(r, server)
    text = out.read_text()
    m = re.match(r"gpuwire sampler: (\d+) samples of the main thread, one per 200 us", text)
    assert m and int(m.group(1)) > 0, text[:500]
    watch = dict(re.findall(r"^watch (\w+): (\d+) stretches", text, re.M))
    assert set(watch) == {"recv", "main"} and int(watch["main"]) >= 1, text[:800]
    top = text.split("== on top of the stack\n", 1)[1].split("==", 1)[0]
    assert re.search(r"^\s+\d+\s+[\d.]+%\s+\S+!\S+", top, re.M), top
    named = subprocess.run([sys.executable, str(ROOT / "tools" / "sample-report"), str(out)],
                           capture_output=True, text=True, timeout=60)
    assert named.returncode == 0 and "== on top of the stack, by library" in named.stdout, named.stderr


def test_preloaded_sampler_works_without_gpuwire(tmp_path):
    out = tmp_path / "native.txt"
    lib = native_client_lib().parent / "gpuwire_sample.so"
    env = dict(os.environ, LD_PRELOAD=str(lib), GPUWIRE_PRELOAD_SAMPLE=str(out))
    r = subprocess.run([sys.executable, "-c", "import time\nt = time.time()\nwhile time.time() - t < 0.3: pass"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    m = re.match(r"gpuwire sampler: (\d+) samples", out.read_text())
    assert m and int(m.group(1)) >= 100, out.read_text()[:300]


def test_worker_profile_logs_the_busiest_ops(tmp_path):
    srv = start_server(tmp_path / "server.log", env={"GPUWIRE_WORKER_PROFILE": "1"})
    try:
        r = gw_run([str(program("vector_add_shared"))], server=srv.address)
        assert r.returncode == 0, explain(r, srv)
        srv.wait_for_log(r"profile: [\d.]+ s running jobs")
        m = srv.wait_for_log(r"profile:\s+cuLaunchKernel\s+(\d+) jobs")
        assert int(m.group(1)) >= 1
    finally:
        srv.stop()


def test_worker_profile_times_the_reader_on_large_copies(tmp_path):
    # memcpy_kinds copies 9 MiB host-to-device, among others: its 4 MiB pieces are read straight into place
    srv = start_server(tmp_path / "server.log", env={"GPUWIRE_WORKER_PROFILE": "1"}, extra_args=("--cache-dir", "off"))
    try:
        # no lanes: copies of 8 MiB or more would otherwise take them once they are open, not the reader
        r = gw_run([str(program("memcpy_kinds_shared"))], server=srv.address, env={"GPUWIRE_LANES": "0"})
        assert r.returncode == 0, explain(r, srv)
        m = srv.wait_for_log(r"profile:\s+\(reader: large payloads\)\s+(\d+) jobs")
        assert int(m.group(1)) >= 4
    finally:
        srv.stop()
