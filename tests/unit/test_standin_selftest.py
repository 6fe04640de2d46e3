"""The CPU stand-in driver (a test double) checks itself: its self-test
(`make -C tests/standin check`) and, where nvcc is present, that the parameter
layouts it registers for the test programs' kernels are the ones nvcc emits
(`make -C tests/standin layouts`). Run here so neither drifts unnoticed."""

import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT

STANDIN = ROOT / "tests" / "standin"


def make(target: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", "-C", str(STANDIN), target], capture_output=True, text=True, timeout=600)


def test_standin_selftest_passes():
    r = make("check")
    assert r.returncode == 0 and "PASS standin_selftest\n" in r.stdout, r.stdout + r.stderr
    assert "PASS standin_selftest_devices" in r.stdout, r.stdout + r.stderr  # several devices, masks, peers


def test_registered_layouts_match_nvcc():
    if not (shutil.which("nvcc") or Path("/usr/local/cuda/bin/nvcc").exists()):
        pytest.skip("nvcc not found (the Makefile looks on PATH, then in /usr/local/cuda/bin)")
    r = make("layouts")
    assert r.returncode == 0 and "registry matches nvcc" in r.stdout, r.stdout + r.stderr
