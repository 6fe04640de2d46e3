"""bench/suite.py's bookkeeping (no benchmark runs here): the median of a path's turns,
and the report line that lists every turn."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_suite():
    spec = importlib.util.spec_from_file_location("bench_suite", ROOT / "bench" / "suite.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_suite"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def rec(rate, ok=True):
    return {"ok": ok, "error": None if ok else "failed", "result": {"launches_per_s": rate} if ok else None,
            "stats": None}


def test_median_run_keeps_the_middle_turn_and_every_value():
    suite = load_suite()
    per_unit = suite._get("launches_per_s", invert=True)
    pick = suite._median_run([rec(100.0), rec(300.0), rec(200.0)], per_unit)
    assert pick["result"]["launches_per_s"] == 200.0
    assert pick["turns_seconds_per_unit"] == [1 / 300.0, 1 / 200.0, 1 / 100.0]
    assert pick["turns_failed"] == 0


def test_median_run_of_an_even_count_takes_the_slower_middle_and_skips_failures():
    suite = load_suite()
    per_unit = suite._get("launches_per_s", invert=True)
    # two good turns left: the slower one stands for them
    pick = suite._median_run([rec(300.0), rec(0, ok=False), rec(400.0)], per_unit)
    assert pick["result"]["launches_per_s"] == 300.0
    assert pick["turns_failed"] == 1
    # all failed: the last run stands, its error with it
    last = rec(0, ok=False)
    assert suite._median_run([rec(0, ok=False), last], per_unit) is last
    # a single turn is left as it was
    one = rec(5.0)
    assert suite._median_run([one], per_unit) is one


def test_markdown_lists_every_turn():
    suite = load_suite()
    per_unit = suite._get("launches_per_s", invert=True)
    native = suite._median_run([rec(280000.0), rec(250000.0), rec(260000.0)], per_unit)
    loop = suite._median_run([rec(240000.0), rec(270000.0), rec(230000.0)], per_unit)
    rep = {"paths": [{"name": "native", "server": None, "rtt_ms": 0, "bandwidth_gbit_s": 0},
                     {"name": "loopback", "server": "x", "rtt_ms": 0, "bandwidth_gbit_s": 0}],
           "date": "d", "card": "c", "host": "h", "commit": "abc", "command": "cmd", "duration_s": 1,
           "standin": False,
           "rows": [{"bench": "launch_throughput", "metric": "launches/s", "rate": True, "per_unit": {},
                     "cells": {"native": {"text": "260,000"},
                               "loopback": {"text": "240,000", "ratio": 240000 / 260000}}}],
           "runs": {"launch_throughput": {"native": native, "loopback": loop}}, "probes": {}}
    md = suite.markdown(rep)
    assert "| launch_throughput | launches/s | 260,000 | 240,000 (92%) |" in md
    line = next(x for x in md.splitlines() if x.startswith("launch_throughput (launches/s)"))
    assert "native 280,000, 260,000, 250,000" in line
    assert "loopback 270,000, 240,000, 230,000" in line
