"""The compat suite's verdict rules (compat/verdict.py), its --rejudge and
tests/gpu/gpu-check's case verdict, on synthetic runs: no GPU, no server."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("compat_verdict", ROOT / "compat" / "verdict.py")
verdict = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(verdict)


def run(result=None, rc=0, **kw):
    base = {"name": "w", "digest": "d1", "tolerance": "exact", "notes": "5 nodes"}
    return {"rc": rc, "timed_out": False, "error": "", "skipped": "", "tail": [],
            "result": None if result is False else {**base, **(result or {})}, **kw}


def tol_run(values, **extra):
    return run({"digest": extra.pop("digest", "t"), "tolerance": "rtol=1e-6 atol=0", "values": values,
                "rtol": 1e-6, "atol": 0.0, **extra})


def test_equal_reports_pass():
    v = verdict.judge(run(), run())
    assert v["verdict"] == "pass" and v["exact"] is True


def test_same_digest_other_field_differs_fails_naming_it():
    # cuda_graph_capture: same digest, "5 nodes" natively, "6 nodes" through gpuwire
    v = verdict.judge(run(), run({"notes": "6 nodes"}))
    assert v["verdict"] == "FAIL"
    assert "notes" in v["why"] and "5 nodes" in v["why"] and "6 nodes" in v["why"]
    v = verdict.judge(run({"flags": 2}), run({"flags": 0}))
    assert v["verdict"] == "FAIL" and "flags" in v["why"]


def test_nested_field_named():
    v = verdict.judge(run({"same": {"platform": "gpu"}}), run({"same": {"platform": "cpu"}}))
    assert v["verdict"] == "FAIL" and "same.platform" in v["why"]


def test_digest_differs_fails():
    v = verdict.judge(run(), run({"digest": "d2"}))
    assert v["verdict"] == "FAIL" and "digest" in v["why"]


@pytest.mark.parametrize("native", [
    run(rc=1), run(rc=-9), run(timed_out=True), run(error="exit 2"), run(False), run() | {"result": {"name": "w"}},
    run(rc=None)])
def test_native_failure_is_native_failed(native):
    for gpuwire in (run(), run(rc=1)):   # whether gpuwire passes or fails alike
        v = verdict.judge(native, gpuwire)
        assert v["verdict"] == "native-failed", v


def test_gpuwire_failure_fails():
    for gpuwire in (run(rc=1), run(timed_out=True), run(False)):
        assert verdict.judge(run(), gpuwire)["verdict"] == "FAIL"


def test_skipped():
    assert verdict.judge(run(skipped="budget"), run())["verdict"] == "skipped"
    assert verdict.judge(run(), run(skipped="budget"))["verdict"] == "skipped"


def test_numeric_within_tolerance_passes():
    a = [1.0, -2.5, 1e6, 0.0, float("nan")]
    b = [x * (1 + 1e-9) for x in a]
    v = verdict.judge(tol_run(a, notes="loss 1.234567"), tol_run(b, notes="loss 1.234568", digest="other"))
    assert v["verdict"] == "pass" and v["exact"] is False


def test_numeric_outside_tolerance_fails():
    v = verdict.judge(tol_run([1.0, 2.0]), tol_run([1.0, 2.002]))
    assert v["verdict"] == "FAIL" and "values" in v["why"]
    v = verdict.judge(tol_run([1.0], notes="loss 1.2"), tol_run([1.0], notes="loss 1.3"))
    assert v["verdict"] == "FAIL" and "notes" in v["why"]


def test_exact_workload_numbers_in_text_compared_exactly():
    v = verdict.judge(run({"notes": "sum 4.194422e+08"}), run({"notes": "sum 4.194423e+08"}))
    assert v["verdict"] == "FAIL"


def test_same_field_compared_exactly_even_with_tolerance():
    v = verdict.judge(tol_run([1.0], same={"n": 1.0}), tol_run([1.0], same={"n": 1.0000001}))
    assert v["verdict"] == "FAIL" and "same" in v["why"]


def test_timing_fields_ignored():
    v = verdict.judge(run({"wall_s": 1.0, "copy_ms": 3.0, "lat_us": 1, "t_ns": 9,
                           "notes": "event timing 185.59 ms (not compared)"}),
                      run({"wall_s": 7.0, "copy_ms": 9.0, "lat_us": 2, "t_ns": 1,
                           "notes": "event timing 556.52 ms (not compared)"}))
    assert v["verdict"] == "pass", v["why"]
    assert not verdict.volatile("ms_count") and not verdict.volatile("nodes")


def test_missing_field_on_one_side_fails():
    for n, g in ((run({"extra": 1}), run()), (run(), run({"extra": 1}))):
        v = verdict.judge(n, g)
        assert v["verdict"] == "FAIL" and "extra" in v["why"] and "missing" in v["why"]


def test_tolerance_without_values_fails():
    r = run({"tolerance": "rtol=1e-6 atol=0", "rtol": 1e-6, "atol": 0.0})
    assert verdict.judge(r, r)["verdict"] == "FAIL"


# ---------------------------------------------------------------- --rejudge

def side(notes, digest="fnv1a64:aa", **kw):
    return {"short": (digest or "")[-12:], "rc": 0, "timed_out": False, "wall_s": 0.4, "error": "", "digest": digest,
            "notes": notes, "round_trips": None, "stats": None, **kw}


def row(name, native, gpuwire, v="pass", tolerance="exact"):
    return {"name": name, "framework": "CUDA C", "framework_key": "cuda", "what": name, "tolerance": tolerance,
            "verdict": v, "why": "", "tail": [], "exact": True, "debug_log": None, "expect": None,
            "native": native, "gpuwire": gpuwire}


def synthetic_results():
    full = {"name": "f", "digest": "x", "tolerance": "exact", "notes": "", "flags": 2}
    return {"date": "2026-12-06T00:00Z", "card": "none", "commit": "abc", "command": "bash compat/run",
            "jobs": 1, "budget_s": 500, "wall_s": 1.0, "versions": {"cuda": "CUDA C"}, "dry_run": False,
            "server": "127.0.0.1:1", "counts": {"pass": 4, "FAIL": 1}, "gpuwire_smi": None, "workloads": [
                row("nodes", side("5 nodes"), side("6 nodes")),
                row("timing", side("event timing 1.00 ms"), side("event timing 9.00 ms")),
                row("native_bad", side(None, digest=None, rc=1, error="exit 1", short="error"), side("ok")),
                row("full", side("", result=full), side("", result={**full, "flags": 0})),
                row("was_fail", side("a"), side("a"), v="FAIL", tolerance="rtol=1 atol=0"),
            ]}


def test_rejudge_synthetic():
    doc, changes = verdict.rejudge(synthetic_results())
    got = {r["name"]: r["verdict"] for r in doc["workloads"]}
    assert got == {"nodes": "FAIL", "timing": "pass", "native_bad": "native-failed", "full": "FAIL",
                   "was_fail": "FAIL"}
    assert doc["counts"] == {"FAIL": 3, "pass": 1, "native-failed": 1}
    assert {c[0] for c in changes} == {"nodes", "native_bad", "full"}
    assert "flags" in dict((c[0], c[3]) for c in changes)["full"]


def test_rejudge_command(tmp_path):
    src = tmp_path / "results.json"
    src.write_text(json.dumps(synthetic_results()))
    before = src.read_text()
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, str(ROOT / "compat" / "runner.py"), "--rejudge", str(src), str(out)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1, p.stderr   # verdicts changed
    assert "nodes: pass -> FAIL" in p.stdout and "6 nodes" in p.stdout
    doc = json.loads((out / "results.json").read_text())
    assert doc["counts"]["FAIL"] == 3
    assert "**FAIL**" in (out / "compatibility.md").read_text()
    assert src.read_text() == before


# ---------------------------------------------------------------- tests/gpu/gpu-check

def gpu_check_verdict(tmp_path, nrc, rrc, nat, rem, want=None):
    (tmp_path / "n").write_text(nat)
    (tmp_path / "r").write_text(rem)
    args = f"{nrc} {rrc} n r d" + (f" {want}" if want is not None else "")
    p = subprocess.run(["bash", "-c", f"source {ROOT / 'tests' / 'gpu' / 'gpu-check'}; case_verdict {args}"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    return p.stdout.rstrip("\n").split("\t")[0]


def test_gpu_check_syntax():
    assert subprocess.run(["bash", "-n", str(ROOT / "tests" / "gpu" / "gpu-check")]).returncode == 0


def test_gpu_check_case_verdict(tmp_path):
    ok = "PASS x\n"
    assert gpu_check_verdict(tmp_path, 0, 0, ok, ok) == "pass"
    assert gpu_check_verdict(tmp_path, 0, 0, "a took 3 ms\n" + ok, "a took 9 ms\n" + ok) == "pass"
    assert gpu_check_verdict(tmp_path, 1, 1, "FAIL x\n", "FAIL x\n") == "NATIVE-FAIL"   # failing alike
    assert gpu_check_verdict(tmp_path, 124, 0, "", ok) == "NATIVE-FAIL"
    assert gpu_check_verdict(tmp_path, 0, 1, ok, ok) == "FAIL"
    assert gpu_check_verdict(tmp_path, 0, 0, ok, "PASS y\n") == "FAIL"
    assert gpu_check_verdict(tmp_path, 2, 2, ok, ok, want=2) == "pass"   # an expected nonzero exit
    assert gpu_check_verdict(tmp_path, 0, 0, ok, ok, want=2) == "NATIVE-FAIL"
