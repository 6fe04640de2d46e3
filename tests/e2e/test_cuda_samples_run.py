"""tests/gpu/cuda-samples-run on synthetic samples (no GPU, no server): plain
programs built by its nvcc rules that behave differently when FAKE_GPUWIRE is
set, the gpuwire command replaced by `env FAKE_GPUWIRE=1`; every verdict and
cause line checked. Needs nvcc (skipped without it)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NVCC = shutil.which("nvcc") or (os.path.exists("/usr/local/cuda/bin/nvcc") and "/usr/local/cuda/bin/nvcc")

PROGRAMS = {
    "okpass": 'puts("Test passed"); return 0;',
    "noword": 'puts("done"); return 0;',
    "wordfail": 'if (g) { fputs("gpuwire: cuFoo is not supported by gpuwire yet\\n", stderr); puts("Test failed!"); }'
                ' else puts("Test passed"); return 0;',
    "exitfail": 'if (g) { fputs("gpuwire: cuBar_v2 is not supported by gpuwire yet\\n", stderr); return 1; }'
                ' puts("Result = PASS"); return 0;',
    "hang": 'if (g) sleep(100); puts("Test passed"); return 0;',
    "natfail": 'if (!g) { puts("CUDA error at x.cu:1 code=100(cudaErrorNoDevice)"); return 1; } return 0;',
    "buildfail": 'this is not C++',
}


def _sample(root: Path, name: str, body: str) -> None:
    d = root / "Samples" / "0_Test" / name
    d.mkdir(parents=True)
    (d / "CMakeLists.txt").write_text(f"project({name})\n# add_executable(wrong wrong.cpp)\nadd_executable({name} main.cpp)\n")
    (d / "main.cpp").write_text('#include <stdio.h>\n#include <stdlib.h>\n#include <unistd.h>\n'
                                'int main() { int g = getenv("FAKE_GPUWIRE") != 0; ' + body + " }\n")


def _stub_libraries(tmp_path: Path) -> Path:
    """Empty libraries standing for the driver stub and the toolkit's libraries."""
    libs = tmp_path / "libs"
    libs.mkdir()
    (libs / "empty.c").write_text("int gw_empty;\n")
    for lib in ("cuda", "cublas", "cublasLt", "cufft", "cusolver", "cusparse", "curand", "nvrtc", "nvJitLink"):
        subprocess.run(["cc", "-shared", "-fPIC", "-o", str(libs / f"lib{lib}.so"), str(libs / "empty.c")], check=True)
    return libs


@pytest.mark.skipif(not NVCC, reason="needs nvcc")
def test_verdicts_and_causes(tmp_path):
    src = tmp_path / "src"
    (src / "Common").mkdir(parents=True)
    for name, body in PROGRAMS.items():
        _sample(src, name, body)
    libs = _stub_libraries(tmp_path)
    out = tmp_path / "out"
    env = {**os.environ, "CUDA_STUBS": str(libs), "SAMPLES_GPUWIRE_CMD": "env FAKE_GPUWIRE=1",
           "SAMPLES_GPUWIRE_TIMEOUT": "3", "SAMPLES_WORK": str(tmp_path / "work"), "PATH":
           f"{os.path.dirname(NVCC)}:{os.environ.get('PATH', '')}"}
    p = subprocess.run([str(ROOT / "tests/gpu/cuda-samples-run"), "--jobs", "2", "--budget", "300", "--out", str(out),
                        str(src), "127.0.0.1:1"], env=env, capture_output=True, text=True, timeout=280)
    assert p.returncode == 0, p.stderr
    rows = {r["sample"]: r for r in json.loads((out / "results.json").read_text())["results"]}
    got = {k: r["verdict"] for k, r in rows.items()}
    assert got == {"okpass": "pass", "noword": "pass", "wordfail": "FAIL", "exitfail": "FAIL", "hang": "HANG",
                   "natfail": "NATIVE-FAIL", "buildfail": "BUILD-FAIL"}, p.stderr
    assert "cuFoo is not supported" in rows["wordfail"]["cause"] and "prints FAIL (native PASS)" in rows["wordfail"]["cause"]
    assert rows["exitfail"]["cause"].startswith("exit 1: gpuwire: cuBar_v2 is not supported")
    assert rows["exitfail"]["native_result"] == "PASS" and rows["exitfail"]["gpuwire_exit"] == "1"
    assert rows["hang"]["cause"].startswith("killed after 3 s")
    assert "cudaErrorNoDevice" in rows["natfail"]["cause"] and rows["natfail"]["native_exit"] == "1"
    assert "error" in rows["buildfail"]["cause"] and rows["buildfail"]["build"] == "fail"
    assert rows["okpass"]["category"] == "0_Test"
    summary = (out / "summary.txt").read_text()
    assert "pass 2" in summary and "through gpuwire: 2 of the 5 that pass natively" in summary
    assert (out / "results.tsv").read_text().count("\n") == 8


@pytest.mark.skipif(not NVCC, reason="needs nvcc")
def test_a_run_the_budget_cuts_short_is_not_judged(tmp_path):
    """A gpuwire run killed because the budget ran out (its timeout cut below
    SAMPLES_GPUWIRE_TIMEOUT) is SKIPPED, not a HANG: binomialOptions, 30 s
    natively, was called a hang so on the H100 (2026-12-07)."""
    src = tmp_path / "src"
    (src / "Common").mkdir(parents=True)
    _sample(src, "slowgw", 'if (g) sleep(100); puts("Test passed"); return 0;')
    libs = _stub_libraries(tmp_path)
    out = tmp_path / "out"
    env = {**os.environ, "CUDA_STUBS": str(libs), "SAMPLES_GPUWIRE_CMD": "env FAKE_GPUWIRE=1",
           "SAMPLES_WORK": str(tmp_path / "work"), "PATH": f"{os.path.dirname(NVCC)}:{os.environ.get('PATH', '')}"}
    p = subprocess.run([str(ROOT / "tests/gpu/cuda-samples-run"), "--jobs", "1", "--budget", "50", "--out", str(out),
                        str(src), "127.0.0.1:1"], env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    (row,) = json.loads((out / "results.json").read_text())["results"]
    assert row["verdict"] == "SKIPPED", row
    assert row["cause"].startswith("not judged: the budget's end cut the gpuwire run at"), row
    assert "SKIPPED 1" in (out / "summary.txt").read_text() and "HANG" not in (out / "summary.txt").read_text()
