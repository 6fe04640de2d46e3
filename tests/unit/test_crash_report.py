"""tools/segv-report.c (the native stack at a fatal signal, preloaded by the
compat suite's debug reruns and by tools/crash-diag) and the runner's naming
of its frames: a program that crashes is reported with the function and line
it crashed in, and still ends by its signal."""

from __future__ import annotations

import importlib.util
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(not (shutil.which("cc") and shutil.which("addr2line")), reason="needs cc and addr2line")

CRASHER = r"""
#include <stdio.h>
#include <stdlib.h>
__attribute__((noinline)) int crash_here(volatile int *p) {
    return *p; /* the crashing line */
}
int main(int argc, char **argv) {
    printf("before\n");
    fflush(stdout);
    return crash_here(argc > 5 ? (int *)argv : NULL);
}
"""


def load_runner():
    name = "compat_runner_for_test"
    if name not in sys.modules:  # its dataclasses look their module up there
        spec = importlib.util.spec_from_file_location(name, ROOT / "compat" / "runner.py")
        sys.modules[name] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[name])
    return sys.modules[name]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp("crash")
    so = d / "segv-report.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O1", "-g", "-o", str(so), str(ROOT / "tools" / "segv-report.c"), "-ldl"],
                   check=True)
    src = d / "crasher.c"
    src.write_text(CRASHER)
    exe = d / "crasher"
    subprocess.run(["cc", "-O1", "-g", "-o", str(exe), str(src)], check=True)
    return so, exe, src


def test_a_crash_is_reported_with_its_function_and_line_and_still_ends_by_its_signal(built):
    so, exe, src = built
    r = subprocess.run([str(exe)], env={"LD_PRELOAD": str(so), "PATH": "/usr/bin:/bin"}, capture_output=True)
    assert r.returncode == -signal.SIGSEGV
    assert r.stdout == b"before\n"
    err = r.stderr.decode()
    assert "segv-report: signal 11" in err
    assert f"{exe} +0x" in err
    named = load_runner().native_frames(r.stderr).decode()
    assert "[compat: native frames at the crash]" in named
    crash_line = next(i for i, line in enumerate(CRASHER.splitlines()) if "the crashing line" in line)
    assert f"crash_here {src}:{crash_line + 1}" in named
    assert "main" in named


def test_a_program_that_does_not_crash_is_untouched(built):
    so, _, _ = built
    r = subprocess.run(["sh", "-c", "echo ok; exit 3"], env={"LD_PRELOAD": str(so), "PATH": "/usr/bin:/bin"},
                       capture_output=True)
    assert (r.returncode, r.stdout, r.stderr) == (3, b"ok\n", b"")


def test_no_frames_no_section():
    assert load_runner().native_frames(b"gpuwire: something\nTraceback\n") == b""
