"""GPU discovery as Ollama does it (issue 20): libcuda.so.1 and
libnvidia-ml.so.1 opened with dlopen by a program that links neither
(tests/programs/discover.c). Through gpuwire it finds the server's device, the
same in CUDA and in NVML, with the driver's versions."""

import re

import pytest

from conftest import NOT_BUILT, PROGRAMS_DIR, explain, gw_run


def test_ollama_style_discovery_sees_the_servers_device(server):
    exe = PROGRAMS_DIR / "discover"
    if not exe.is_file():
        pytest.skip(NOT_BUILT)
    r = gw_run([str(exe)], server=server.address)
    assert r.returncode == 0 and r.stdout.strip().endswith("PASS discover"), explain(r, server)
    out = r.stdout
    assert re.search(r"^driver API 13000, 1 device\(s\)$", out, re.M), out
    cuda = re.search(r"^device 0: (.+?), compute (\d+)\.(\d+), (\d+) MiB, bus (\S+), uuid", out, re.M)
    nvml = re.search(r"^NVML: driver (\S+), 1 device\(s\)$", out, re.M)
    nvml_mem = re.search(r"^NVML device 0: (\d+) MiB", out, re.M)
    assert cuda and nvml and nvml_mem, out
    assert cuda.group(1) == "gpuwire CPU stand-in" and (cuda.group(2), cuda.group(3)) == ("9", "0"), out
    assert cuda.group(4) == nvml_mem.group(1), "CUDA and NVML disagree on the device's memory:\n" + out
