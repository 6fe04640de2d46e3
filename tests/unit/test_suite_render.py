"""compat/render_suites.py and tests/gpu/smi-compare on synthetic input: the
markdown tables for docs/compatibility.md, and nvidia-smi's moving values
masked while every other difference shows. No GPU, no server."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _load(name: str, path: Path):
    loader = importlib.machinery.SourceFileLoader(name, str(path))
    spec = importlib.util.spec_from_loader(name, loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


render = _load("render_suites", ROOT / "compat" / "render_suites.py")
smi = _load("smi_compare", ROOT / "tests" / "gpu" / "smi-compare")

COLS = ["sample", "category", "build", "native_exit", "gpuwire_exit", "native_result", "gpuwire_result", "verdict",
        "native_s", "gpuwire_s", "cause"]
ROWS = [
    ["vectorAdd", "0_Introduction", "ok", "0", "0", "PASS", "PASS", "pass", "1", "2", ""],
    ["matrixMulDrv", "0_Introduction", "ok", "0", "1", "PASS", "", "FAIL", "1", "2",
     "exit 1: gpuwire: cuCtxCreate_v4 is not supported by gpuwire yet: returning CUDA_ERROR_NOT_SUPPORTED"],
    ["StreamPriorities", "3_CUDA_Features", "ok", "0", "124", "", "", "HANG", "1", "120", "killed after 120 s"],
    ["simpleP2P", "0_Introduction", "ok", "2", "-", "", "", "NATIVE-FAIL", "0", "",
     "Two or more GPUs with Peer-to-Peer access capability are required | waiving"],
    ["interval", "2_Concepts_and_Techniques", "fail", "-", "-", "", "", "BUILD-FAIL", "", "",
     "fatal error: boost/numeric/interval.hpp: No such file or directory"],
    ["conjugateGradient", "4_CUDA_Libraries", "ok", "0", "0", "PASS", "FAIL", "FAIL", "1", "3",
     "prints FAIL (native PASS): Test failed!"],
]
SMI = {"suite": "nvidia-smi", "date": "2026-12-06T12:00Z", "results": [
    {"test": "nvidia-smi", "native_exit": 0, "gpuwire_exit": 0, "verdict": "same", "cause": "", "differing": []},
    {"test": "nvidia-smi -q", "native_exit": 0, "gpuwire_exit": 0, "verdict": "DIFFERS",
     "cause": "1 lines differ: -    Persistence Mode : Enabled",
     "differing": ["-    Persistence Mode : Enabled", "+    Persistence Mode : Disabled"]},
]}


def _samples_json(tmp_path: Path) -> Path:
    p = tmp_path / "results.json"
    p.write_text(json.dumps({"suite": "cuda-samples", "date": "2026-12-06T12:00Z", "card": "NVIDIA H100 80GB HBM3, 580.159.04",
                             "seconds": 400, "budget_s": 420, "samples_commit": "c94ff366aed18c79",
                             "gpuwire_commit": "abc1234", "results": [dict(zip(COLS, r)) for r in ROWS]}))
    return p


def _table_rows(text: str, suite: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in text.splitlines()
            if line.startswith(f"| {suite} |")]


def test_samples_table_counts_and_order(tmp_path):
    text = render.render(render.load_samples(_samples_json(tmp_path)), None)
    assert "**6 samples**" in text
    assert "Through gpuwire **1 of the 4** that pass natively pass (25.0%)" in text
    assert "NVIDIA H100 80GB HBM3" in text and "gpuwire at abc1234" in text and "cuda-samples at c94ff366ae" in text
    rows = _table_rows(text, "cuda-samples")
    assert [r[1] for r in rows] == ["0_Introduction/matrixMulDrv", "4_CUDA_Libraries/conjugateGradient",
                                    "3_CUDA_Features/StreamPriorities", "0_Introduction/simpleP2P",
                                    "2_Concepts_and_Techniques/interval", "0_Introduction/vectorAdd"]
    by = {r[1].split("/")[1]: r for r in rows}
    assert by["matrixMulDrv"][2:5] == ["exit 0, PASS", "exit 1", "**FAIL**"]
    assert "cuCtxCreate_v4 is not supported" in by["matrixMulDrv"][5]
    assert by["conjugateGradient"][3] == "exit 0, FAIL"
    assert by["StreamPriorities"][3:5] == ["**hang**", "**HANG**"]
    assert by["interval"][2:5] == ["not built", "–", "BUILD-FAIL"]
    assert by["vectorAdd"][2:] == ["exit 0, PASS", "exit 0, PASS", "pass", ""]   # no cause when they agree
    # a | inside a cause is escaped and does not add a column
    assert "required \\| waiving" in text and len(by["simpleP2P"]) == 6


def test_samples_from_tsv_matches_json(tmp_path):
    tsv = tmp_path / "results.tsv"
    tsv.write_text("\n".join("\t".join(r) for r in [COLS] + ROWS) + "\n")
    a = _table_rows(render.render(render.load_samples(tsv), None), "cuda-samples")
    b = _table_rows(render.render(render.load_samples(_samples_json(tmp_path)), None), "cuda-samples")
    assert a == b


def test_smi_table_and_differing_lines():
    text = render.render(None, SMI)
    rows = _table_rows(text, "nvidia-smi")
    assert rows[0] == ["nvidia-smi", "`nvidia-smi`", "exit 0", "exit 0", "same", ""]
    assert rows[1][4] == "**DIFFERS**" and "Persistence Mode" in rows[1][5]
    assert "+    Persistence Mode : Disabled" in text and "```" in text
    assert "### NVIDIA's cuda-samples" not in text


def test_cli_writes_out_and_replaces_doc_section(tmp_path):
    smi_path = tmp_path / "smi.json"
    smi_path.write_text(json.dumps(SMI))
    doc = tmp_path / "compatibility.md"
    doc.write_text("# Compatibility\n\nkept\n")
    out = tmp_path / "suites.md"
    args = ["--samples", str(_samples_json(tmp_path)), "--smi", str(smi_path), "--out", str(out), "--doc", str(doc)]
    assert render.main(args) == 0
    first = doc.read_text()
    assert first.startswith("# Compatibility\n\nkept\n") and first.count(render.BEGIN) == 1
    assert out.read_text().strip() in first
    doc.write_text(first + "\ntail after\n")
    assert render.main(args) == 0                      # again: replaced in place, not appended twice
    second = doc.read_text()
    assert second.count(render.BEGIN) == 1 and second.endswith("tail after\n") and "kept" in second


def test_a_suite_not_given_keeps_its_last_section(tmp_path):
    """Rendering the samples alone keeps the nvidia-smi section of the run before."""
    smi_path = tmp_path / "smi.json"
    smi_path.write_text(json.dumps(SMI))
    out = tmp_path / "suites.md"
    samples = str(_samples_json(tmp_path))
    assert render.main(["--samples", samples, "--smi", str(smi_path), "--out", str(out)]) == 0
    both = out.read_text()
    assert render.main(["--samples", samples, "--out", str(out)]) == 0
    again = out.read_text()
    assert again.count("### nvidia-smi") == 1 and again.count("### NVIDIA's cuda-samples") == 1
    smi_part = both[both.index("### nvidia-smi"):].strip()
    assert smi_part in again


Q_NATIVE = """
==============NVSMI LOG==============

Timestamp                                 : Fri Nov 27 18:09:20 2026
Driver Version                            : 580.159.04

GPU 00000000:00:06.0
    Product Name                          : NVIDIA H100 80GB HBM3
    Performance State                     : P0
    Clocks Event Reasons
        Idle                              : Not Active
    FB Memory Usage
        Total                             : 81559 MiB
        Used                              : 1 MiB
    Temperature
        GPU Current Temp                  : 37 C
        GPU Shutdown Temp                 : 92 C
    Clocks
        Graphics                          : 1980 MHz
    Max Clocks
        Graphics                          : 1980 MHz
    Persistence Mode                      : Enabled
    Processes                             : None
"""


def _q_gpuwire(**change) -> str:
    text = (Q_NATIVE.replace("18:09:20", "18:09:29").replace("P0", "P2").replace("Not Active", "Active")
            .replace(": 1 MiB", ": 483 MiB").replace("37 C", "41 C").replace(": 1980 MHz\n    Max", ": 345 MHz\n    Max"))
    text = text.replace("    Processes                             : None\n",
                        "    Processes\n        GPU instance ID                   : N/A\n"
                        "        Process ID                        : 1234\n            Name                          : w\n")
    for a, b in change.items():
        text = text.replace(a.replace("_", " "), b)
    return text


def test_smi_q_masks_only_moving_values():
    r = smi.compare("nvidia-smi -q", (0, Q_NATIVE), (0, _q_gpuwire()), smi.mask_q)
    assert r["verdict"] == "same", r["differing"]
    # stable values are compared: the maximum clock, the shutdown temperature, a total
    for key, new in (("1980 MHz\n    Persistence", "1755 MHz\n    Persistence"), ("92 C", "90 C"),
                     ("81559 MiB", "81000 MiB"), ("580.159.04", "580.000")):
        r = smi.compare("nvidia-smi -q", (0, Q_NATIVE), (0, _q_gpuwire().replace(key, new)), smi.mask_q)
        assert r["verdict"] == "DIFFERS", key
        assert any(new.split("\n")[0] in d for d in r["differing"])


TABLE = """Fri Nov 27 18:09:20 2026
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI 580.159.04             Driver Version: 580.159.04     CUDA Version: 13.0     |
|=========================================+========================+======================|
|   0  NVIDIA H100 80GB HBM3          On  |   00000000:00:06.0 Off |                    0 |
| N/A   37C    P0            104W /  700W |       1MiB /  81559MiB |      0%      Default |
+-----------------------------------------+------------------------+----------------------+
| Processes:                                                                              |
|=========================================================================================|
|  No running processes found                                                             |
+-----------------------------------------------------------------------------------------+
"""


def test_smi_table_masks_moving_values_and_processes():
    gw = (TABLE.replace("18:09:20", "18:10:01").replace("37C", "41C").replace("104W", " 99W")
          .replace("  1MiB", "483MiB").replace(" 0%", "17%")
          .replace("|  No running processes found                                                             |",
                   "|    0   N/A  N/A    1234      C   gpuwire-worker                          482MiB |\n"
                   "|    0   N/A  N/A    1235      C   other                                   482MiB |"))
    assert smi.compare("nvidia-smi", (0, TABLE), (0, gw), smi.mask_table)["verdict"] == "same"
    r = smi.compare("nvidia-smi", (0, TABLE), (0, gw.replace("CUDA Version: 13.0", "CUDA Version: 12.9")), smi.mask_table)
    assert r["verdict"] == "DIFFERS" and any("12.9" in d for d in r["differing"])


def test_smi_failures():
    r = smi.compare("nvidia-smi", (0, TABLE), (255, "gpuwire: nvmlInternalGetExportTable is not supported\n"
                                                   "Mismatch in versions between nvidia-smi and NVML\n"), smi.mask_table)
    assert r["verdict"] == "FAIL" and r["cause"].startswith("exit 255: gpuwire: nvmlInternalGetExportTable")
    assert smi.compare("x", (9, "no devices"), (0, ""), smi.mask_table)["verdict"] == "NATIVE-FAIL"
    assert smi.compare("x", (0, TABLE), (124, ""), smi.mask_table)["verdict"] == "HANG"


def test_smi_compare_cli_with_a_fake_nvidia_smi(tmp_path):
    (tmp_path / "table.native").write_text(TABLE)
    (tmp_path / "table.gpuwire").write_text(TABLE.replace("37C", "40C"))
    (tmp_path / "q.native").write_text(Q_NATIVE)
    (tmp_path / "q.gpuwire").write_text(_q_gpuwire(Enabled="Disabled"))
    fake = tmp_path / "nvidia-smi"
    fake.write_text(f'#!/bin/sh\nk=table; [ "$1" = -q ] && k=q\ncat "{tmp_path}/$k.${{SIDE:-native}}"\n')
    fake.chmod(0o755)
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, str(ROOT / "tests/gpu/smi-compare"), "--out", str(out)], capture_output=True,
                       text=True, timeout=60,
                       env={**os.environ, "SMI_BIN": str(fake), "SMI_GPUWIRE_CMD": "env SIDE=gpuwire"})
    assert p.returncode == 1, p.stdout + p.stderr
    assert "nvidia-smi: same, nvidia-smi -q: DIFFERS" in p.stdout
    assert "+    Persistence Mode                      : Disabled" in p.stdout
    data = json.loads((out / "smi.json").read_text())
    assert [r["verdict"] for r in data["results"]] == ["same", "DIFFERS"]
    assert (out / "nvidia-smi-q.gpuwire.txt").exists()


def test_smi_ignores_gpuwire_messages_but_names_them_in_a_failure():
    gw = "gpuwire: connected to 127.0.0.1:7761 (lease 3)\n" + TABLE
    assert smi.compare("nvidia-smi", (0, TABLE), (0, gw), smi.mask_table)["verdict"] == "same"
    r = smi.compare("nvidia-smi", (0, TABLE), (0, gw.replace("Driver Version: 580.159.04", "Driver Version: 1")),
                    smi.mask_table)
    assert r["verdict"] == "DIFFERS" and r["cause"].startswith("1 line differs: ")
