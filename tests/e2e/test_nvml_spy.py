"""tools/nvml-spy (issue 14's instrument for nvidia-smi's NVML export table)
against a fake "real" libnvidia-ml.so.1 (tools/nvml-spy/test/fake_nvml.c: three
public names, one export table of a size word and four functions) and a small
program calling them (test/smi_like.c): the program's results through the
spy equal its results without it (the trampolines forward arguments, stack
arguments included, and results), and the spy's log says what the GPU run
needs: each public call with its return code, the UUIDs asked for with the
real answer, the table's words and code slots, each slot call with its
arguments, result and the bytes it wrote. Then tools/nvml-spy/run-smi, the
gpu-all step, with the program standing in for nvidia-smi, both placements:
by LD_LIBRARY_PATH, and by bind mount when the program dlopens an absolute
path (needs `unshare -m`, skipped without it). No GPU, no server."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPY = ROOT / "tools" / "nvml-spy"
CC = shutil.which("gcc") or shutil.which("cc")
UUID = "a1b2c3d40102030405060708090a0b0c"

pytestmark = pytest.mark.skipif(not CC or not shutil.which("nm"), reason="needs gcc and nm")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The fake driver folder (drv/libnvidia-ml.so.1 -> libnvidia-ml.so.999),
    the test program and the spy built with the fake's names, in one folder."""
    d = tmp_path_factory.mktemp("nvmlspy")
    (d / "drv").mkdir()
    subprocess.run([CC, "-shared", "-fPIC", "-Wall", "-Werror", "-Wl,-soname,libnvidia-ml.so.1",
                    "-o", str(d / "drv" / "libnvidia-ml.so.999"), str(SPY / "test" / "fake_nvml.c")], check=True)
    os.symlink("libnvidia-ml.so.999", d / "drv" / "libnvidia-ml.so.1")
    subprocess.run([CC, "-Wall", "-Werror", "-o", str(d / "smi_like"), str(SPY / "test" / "smi_like.c"), "-ldl"],
                   check=True)
    r = subprocess.run(["make", "-s", "-C", str(SPY), f"B={d / 'spy'}", f"NAMES_FROM={d / 'drv' / 'libnvidia-ml.so.1'}",
                        "CFLAGS_EXTRA=-Werror"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return d


def _run(built: Path, spy: bool, **env: str) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if not k.startswith("NVML_SPY")}
    e.pop("LD_LIBRARY_PATH", None)
    if spy:
        e.update(NVML_SPY_REAL=str(built / "drv" / "libnvidia-ml.so.1"), LD_LIBRARY_PATH=str(built / "spy"))
    else:
        e.update(LD_LIBRARY_PATH=str(built / "drv"))
    e.update(env)
    return subprocess.run([str(built / "smi_like")], capture_output=True, text=True, env=e, timeout=60)


def test_names_come_from_the_real_library(built):
    names = (built / "spy" / "names.txt").read_text().split()
    assert names == ["nvmlInit_v2", "nvmlShutdown", "nvmlSystemGetDriverVersion"]
    exported = subprocess.run(["nm", "-D", "--defined-only", str(built / "spy" / "libnvidia-ml.so.1")],
                              capture_output=True, text=True, check=True).stdout
    got = sorted(re.findall(r" T (\w+)", exported))
    assert got == sorted(names + ["nvmlInternalGetExportTable"])  # nothing of the spy's own


def test_results_through_the_spy_equal_the_real_ones(built):
    plain = _run(built, spy=False)
    spied = _run(built, spy=True)
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert spied.returncode == 0, spied.stdout + spied.stderr
    assert spied.stdout == plain.stdout
    out = plain.stdout
    assert "slot1 0 0x1234abcd" in out and "slot2 21" in out and "slot3 0 NVML SPY" in out
    assert "slot4 2500" in out  # two integer arguments came on the stack, and a double
    assert "other table 3 (nil)" in out and "same copy 1" in out
    assert "nvml-spy" not in plain.stderr


def test_log_lines(built):
    r = _run(built, spy=True)
    log = r.stderr.splitlines()
    assert all(line.startswith("nvml-spy: ") for line in log), log
    text = r.stderr
    assert re.search(r"loaded into pid \d+ \(.*smi_like\)", text)
    assert "3 public names wrapped, nvmlInternalGetExportTable present" in text
    assert re.search(r"call nvmlInit_v2\(0x[0-9a-f]+, .*\) -> 0 \(0x0\)", text)
    assert re.search(r"call nvmlSystemGetDriverVersion\(0x[0-9a-f]+, 0x20, .*\) -> 0 ", text)
    assert re.search(r"call nvmlShutdown\(.*\) -> 0 ", text)
    # the refused UUID: the real answer passed on, nothing wrapped
    assert re.search(r"export table uuid ee0{30} .*-> 3, table \(nil\)", text)
    assert len(re.findall(rf"export table uuid {UUID} .*-> 0, table 0x", text)) == 2
    assert re.search(r"table a1b2c3d4 first bytes 2800000000000000[0-9a-f]{16}; word 0 looks like a size in bytes;"
                     r" \d+ words readable, length 5 words, 4 code slots into the real library: 1,2,3,4", text)
    assert "table a1b2c3d4 word 0 0x28 value" in text
    assert "table a1b2c3d4 word 15 " in text and "table a1b2c3d4 word 16 " not in text  # 16 words shown
    assert len(re.findall(r"table a1b2c3d4 word [1-4] 0x[0-9a-f]+ code real\+0x[0-9a-f]+", text)) == 4
    assert re.search(r"table a1b2c3d4 slot 2 args 0x1 0x2 0x3 0x4 0x5 0x6 -> 0x15 \(21\)", text)
    assert re.search(r"table a1b2c3d4 slot 4 args 0x64 0x0 0x0 0x0 0x0 0x0 -> 0x9c4 \(2500\)", text)
    # slot 1 wrote 0x1234abcd through its pointer argument: the bytes after the call
    assert re.search(r"table a1b2c3d4 slot 1 +arg0 out cdab3412", text)
    # slot 3's input string and what it wrote
    assert re.search(r"table a1b2c3d4 slot 3 +arg0 in +" + b"nvml spy".hex(), text)
    assert re.search(r"table a1b2c3d4 slot 3 +arg1 out +" + b"NVML SPY\0".hex(), text)
    assert len(re.findall(r"table a1b2c3d4 slot \d+ args", text)) == 4  # each slot once, no more


def test_log_file_and_missing_real_library(built, tmp_path):
    log = tmp_path / "spy.log"
    r = _run(built, spy=True, NVML_SPY_LOG=str(log))
    assert r.returncode == 0 and "nvml-spy" not in r.stderr
    assert "table a1b2c3d4 slot 2 args 0x1 0x2" in log.read_text()
    r = _run(built, spy=True, NVML_SPY_REAL=str(tmp_path / "absent.so"))
    assert "cannot load the real library" in r.stderr
    assert "init 1" in r.stdout  # NVML_ERROR_UNINITIALIZED, not a crash
    r = _run(built, spy=True, NVML_SPY_REAL=str(built / "spy" / "libnvidia-ml.so.1"))
    assert "is this spy itself" in r.stderr and "init 1" in r.stdout


def _run_smi(built: Path, out: Path, **env: str) -> str:
    e = {k: v for k, v in os.environ.items() if not k.startswith("NVML_SPY")}
    e.update(SMI_BIN=str(built / "smi_like"), NVML_SPY_REAL=str(built / "drv" / "libnvidia-ml.so.1"), **env)
    r = subprocess.run([str(SPY / "run-smi"), str(out)], capture_output=True, text=True, env=e, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_run_smi_by_library_path(built, tmp_path):
    text = _run_smi(built, tmp_path / "o")
    assert "verdict: dlopens libnvidia-ml by name: LD_LIBRARY_PATH works" in text
    assert "placement: path" in text and "bind mount" not in text
    assert text.count("slot 2 args 0x1 0x2 0x3 0x4 0x5 0x6 -> 0x15") == 2  # nvidia-smi and nvidia-smi -q
    summary = text.split("== summary")[1]
    assert re.search(rf"\s4 export table uuid {UUID} -> 0\n", summary)
    assert re.search(r"\s2 export table uuid ee0{30} -> 3\n", summary)
    assert re.search(r"\s2 table a1b2c3d4 slot 4 args", summary)
    assert "public calls: 6 (3 names)" in summary
    assert "LD_LIBRARY_PATH works; spy placed by path" in summary
    assert "exit: nvidia-smi 0, nvidia-smi -q 0; real library: 3 nvml* names" in summary
    assert not (tmp_path / "o" / "spy").exists()  # no libraries in what comes back
    assert (tmp_path / "o" / "smi-q.log").exists() and (tmp_path / "o" / "smi.out").read_text().startswith("init 0")


def _can_unshare() -> bool:
    return shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-m", "true"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _can_unshare(), reason="needs unshare -m (root)")
def test_run_smi_by_bind_mount_when_the_program_dlopens_a_path(built, tmp_path):
    real = built / "drv" / "libnvidia-ml.so.1"
    text = _run_smi(built, tmp_path / "o", SMI_LIKE_NVML=str(real))
    assert "placing it by bind mount" in text and "placement: bind" in text
    assert "spy placed by bind" in text.split("== summary")[1]
    assert f"real library {tmp_path / 'o' / 'real' / 'libnvidia-ml.so.1'} loaded" in text
    assert text.count("slot 2 args 0x1 0x2 0x3 0x4 0x5 0x6 -> 0x15") == 2
    assert "slot1 0 0x1234abcd" in (tmp_path / "o" / "smi-q.out").read_text()
    # the bind mount stayed inside the namespace: the real file is the fake again
    assert b"nvmlInternalGetExportTable" in real.read_bytes() and b"spy_tramp" not in real.read_bytes()
