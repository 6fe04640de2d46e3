"""Fuzzing the worker's frame loop (native/fuzz/): libFuzzer with AddressSanitizer,
UndefinedBehaviorSanitizer and LeakSanitizer, on the CPU stand-in driver, for a
bounded time. Needs clang with its libFuzzer runtime (Debian: clang and
libclang-rt-14-dev; .ci/run installs them); skipped without.

GPUWIRE_FUZZ_SECONDS sets the length of the run (default 60)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT
from gpuwire import paths

FUZZ_DIR = ROOT / "native" / "fuzz"
BUILD = ROOT / "build" / "fuzz"
BINARY = BUILD / "fuzz_worker"
SECONDS = int(os.environ.get("GPUWIRE_FUZZ_SECONDS", "60"))

# anything a sanitizer or libFuzzer prints when it finds something
FINDING = re.compile(r"ERROR: (AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|libFuzzer)|"
                     r"runtime error:|deadly signal|ALARM: working on the last Unit|out-of-memory|"
                     r"SUMMARY: ", re.I)

# seeds that must run to the end of their session; a protocol change that breaks
# them would otherwise leave the fuzzer stuck at the first frames
DEEP_SEEDS = ["device", "memory", "module_launch", "library_streams", "threads", "nvml", "landings"]


@pytest.fixture(scope="module")
def fuzzer():
    clang = shutil.which(os.environ.get("CLANG", "clang"))
    if not clang:
        pytest.skip("clang not found: the libFuzzer target needs clang (apt-get install clang libclang-rt-14-dev)")
    if not (paths.NATIVE_DIR / "libgpuwire_standin.so").is_file():
        pytest.skip("the stand-in driver is not built: run ./scripts/setup (make -C native)")
    make = subprocess.run(["make", "-C", str(FUZZ_DIR), f"CLANG={clang}", f"PYTHON={sys.executable}", "all", "seeds"],
                          capture_output=True, text=True, timeout=600)
    if make.returncode != 0:
        if "libclang_rt.fuzzer" in make.stderr or "libclang_rt.asan" in make.stderr:
            pytest.skip("clang has no libFuzzer/sanitizer runtime (Debian: apt-get install libclang-rt-14-dev)")
        pytest.fail(f"building the fuzz target failed:\n{make.stdout}\n{make.stderr}")
    return BINARY


def test_seeds_reach_the_end_of_their_session(fuzzer):
    """Each seed runs once, with the worker's log visible: every call in it decodes."""
    for name in DEEP_SEEDS:
        seed = BUILD / "seeds" / f"seed_{name}"
        r = subprocess.run([str(fuzzer), "-runs=1", str(seed)], capture_output=True, text=True, timeout=120)
        out = r.stdout + r.stderr
        assert r.returncode == 0 and not FINDING.search(out), f"seed {name}:\n{out}"
        assert "client said goodbye" in out and "closing session" not in out, f"seed {name} stops early:\n{out}"
        assert "unknown" not in out, f"seed {name} names a handle the worker does not know:\n{out}"


def test_regression_inputs_pass(fuzzer):
    """Inputs that once crashed the worker end their session cleanly: as the fuzzer
    found them (native/fuzz/regressions) and reduced to their point (make_seeds.py)."""
    inputs = sorted((FUZZ_DIR / "regressions").glob("*")) + sorted((BUILD / "seeds").glob("regress_*"))
    if not inputs:
        pytest.skip("no regression inputs")
    # sleeps of 1.5 s: long enough to outlast the worker's half-second join at a
    # session's end (regress_a_thread_left_in_the_driver), short enough to wait out
    env = dict(os.environ, GPUWIRE_STANDIN_SLEEP_CAP_MS="1500")
    r = subprocess.run([str(fuzzer), "-timeout=30", *map(str, inputs)], capture_output=True, text=True, timeout=300,
                       env=env)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and not FINDING.search(out), out
    if any(p.name == "regress_a_thread_left_in_the_driver" for p in inputs):
        assert "still inside the driver" in out, "the regression input should leave a thread in the driver:\n" + out


def test_fuzz_worker_for_a_bounded_time(fuzzer, tmp_path):
    corpus, artifacts = tmp_path / "corpus", tmp_path / "artifacts"
    corpus.mkdir()
    artifacts.mkdir()
    args = [str(fuzzer), f"-max_total_time={SECONDS}", "-rss_limit_mb=2048",
            # a STAGE frame may announce a blob of up to 4 GiB, which the worker
            # allocates at once (untouched, so no RSS): allowed, like the kernel does
            "-malloc_limit_mb=4608", "-timeout=20", "-max_len=16384",
            "-close_fd_mask=2",  # the worker's log lines; sanitizer reports still show
            "-print_final_stats=1", f"-artifact_prefix={artifacts}/", str(corpus), str(BUILD / "seeds")]
    # a smaller quarantine keeps the peak RSS (which -rss_limit_mb watches) well below the limit
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=1:quarantine_size_mb=64", UBSAN_OPTIONS="print_stacktrace=1")
    r = subprocess.run(args, capture_output=True, text=True, timeout=SECONDS + 240, env=env)
    out = r.stdout + r.stderr
    found = sorted(p.name for p in artifacts.iterdir())
    assert r.returncode == 0 and not found and not FINDING.search(out), (
        f"the fuzzer found something (exit status {r.returncode}; inputs {found} in {artifacts}):\n{out[-20000:]}")
    runs = re.search(r"stat::number_of_executed_units:\s*(\d+)", out)
    assert runs and int(runs.group(1)) >= 1000, f"the fuzzer ran too few inputs:\n{out[-5000:]}"
