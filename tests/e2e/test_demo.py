"""`gpuwire demo`, the first thing a new user runs."""

import subprocess

import pytest

from conftest import GPUWIRE, NOT_BUILT, PROGRAMS_DIR, gpuwire_env


def test_demo_runs_vector_add():
    if not (PROGRAMS_DIR / "vector_add_shared").is_file():
        pytest.skip(NOT_BUILT)
    r = subprocess.run(GPUWIRE + ["demo"], capture_output=True, text=True, timeout=240, env=gpuwire_env())
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "CPU stand-in driver (a test double)" in out or "serving the real GPU" in out, out
    assert any(ln.startswith("PASS") for ln in r.stdout.splitlines()), out
    assert "driver calls" in out and "round trips" in out, out


def test_demo_says_how_to_build_a_missing_program(tmp_path):
    r = subprocess.run(GPUWIRE + ["demo", "--program", str(tmp_path / "nothing")], capture_output=True, text=True,
                       timeout=60, env=gpuwire_env())
    assert r.returncode == 2
    assert "not built" in r.stderr and "scripts/setup" in r.stderr
