"""NVML's NVLink and confidential-computing getters, forwarded (issue 19): NCCL
reads them to build its topology (on the H100 gpuwire logged
nvmlDeviceGetNvLinkCapability and nvmlSystemGetConfComputeSettings as not
supported). The same script runs straight on the stand-in NVML and through
gpuwire against a stand-in server, with one device (no NVLink: NOT_SUPPORTED
passed on) and with three (the stand-in's ring of links); every answer must
be the same both ways."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import ROOT, explain, gw_run, start_server

STANDIN_NVML = ROOT / "src" / "gpuwire" / "_native" / "libgpuwire_standin_nvml.so"

SCRIPT = r"""
import ctypes, sys
nvml = ctypes.CDLL(sys.argv[1])
u, ull = ctypes.c_uint, ctypes.c_ulonglong
assert nvml.nvmlInit_v2() == 0
n = u()
assert nvml.nvmlDeviceGetCount_v2(ctypes.byref(n)) == 0
print("count", n.value)

class Pci(ctypes.Structure):  # nvmlPciInfo_t
    _fields_ = [("busIdLegacy", ctypes.c_char * 16), ("domain", u), ("bus", u), ("device", u),
                ("pciDeviceId", u), ("pciSubSystemId", u), ("busId", ctypes.c_char * 32)]

for i in range(n.value):
    d = ctypes.c_void_p()
    assert nvml.nvmlDeviceGetHandleByIndex_v2(i, ctypes.byref(d)) == 0
    for link in (0, 1, 2, 18):
        v = u(77)
        print("state", i, link, nvml.nvmlDeviceGetNvLinkState(d, link, ctypes.byref(v)), v.value)
        v = u(77)
        print("version", i, link, nvml.nvmlDeviceGetNvLinkVersion(d, link, ctypes.byref(v)), v.value)
        for cap in (0, 2, 4, 9):
            v = u(77)
            print("cap", i, link, cap, nvml.nvmlDeviceGetNvLinkCapability(d, link, cap, ctypes.byref(v)), v.value)
        p = Pci()
        r = nvml.nvmlDeviceGetNvLinkRemotePciInfo_v2(d, link, ctypes.byref(p))
        print("remote_pci", i, link, r, p.busId.decode(), p.bus, hex(p.pciDeviceId))
        t = u(77)
        print("remote_type", i, link, nvml.nvmlDeviceGetNvLinkRemoteDeviceType(d, link, ctypes.byref(t)), t.value)
        c = ull(77)
        print("errors", i, link, nvml.nvmlDeviceGetNvLinkErrorCounter(d, link, 3, ctypes.byref(c)), c.value)

settings = (u * 5)((1 << 24) | 20, 9, 9, 9, 9)  # nvmlSystemConfComputeSettings_v1
print("cc_settings", nvml.nvmlSystemGetConfComputeSettings(settings), list(settings))
settings = (u * 5)((2 << 24) | 20, 9, 9, 9, 9)  # a version this NVML does not have
print("cc_settings_v2", nvml.nvmlSystemGetConfComputeSettings(settings), list(settings))
state = (u * 3)(9, 9, 9)
print("cc_state", nvml.nvmlSystemGetConfComputeState(state), list(state))
caps = (u * 2)(9, 9)
print("cc_caps", nvml.nvmlSystemGetConfComputeCapabilities(caps), list(caps))
ready = u(9)
print("cc_ready", nvml.nvmlSystemGetConfComputeGpusReadyState(ctypes.byref(ready)), ready.value)
assert nvml.nvmlShutdown() == 0
"""


@pytest.fixture(scope="module", params=[1, 3], ids=["one_device", "three_devices"])
def setup(request, tmp_path_factory):
    if not STANDIN_NVML.is_file():
        pytest.skip(f"{STANDIN_NVML} is not built (./scripts/setup)")
    env = {"GPUWIRE_STANDIN_DEVICES": str(request.param)}
    srv = start_server(tmp_path_factory.mktemp(f"nvlink{request.param}") / "server.log", env=env)
    yield request.param, srv, env
    srv.stop()


def test_nvlink_and_conf_compute_answers_match_the_stand_in(setup):
    ndev, srv, env = setup
    native = subprocess.run([sys.executable, "-c", SCRIPT, str(STANDIN_NVML)], capture_output=True, text=True,
                            timeout=60, env={**os.environ, **env})
    assert native.returncode == 0, native.stderr
    remote = gw_run([sys.executable, "-c", SCRIPT, "libnvidia-ml.so.1"], server=srv.address, timeout=60)
    assert remote.returncode == 0, explain(remote, srv)
    got = [ln for ln in remote.stdout.splitlines() if not ln.startswith("gpuwire:")]
    assert got == native.stdout.splitlines(), explain(remote, srv)
    assert "not supported by gpuwire" not in remote.stderr, remote.stderr
    lines = {tuple(ln.split()[:3]): ln.split()[3:] for ln in got}
    if ndev == 1:  # no NVLink on a single device: passed on as the library says
        assert lines[("state", "0", "0")][0] == "3", got
    else:  # the ring: device 0's link 0 reaches device 1 (bus 1), link 1 device 2
        assert lines[("state", "0", "0")] == ["0", "1"], got
        assert lines[("remote_pci", "0", "0")][:2] == ["0", "00000000:01:00.0"], got
        assert lines[("remote_pci", "0", "1")][:2] == ["0", "00000000:02:00.0"], got
        assert lines[("state", "0", "18")][0] == "2", got  # past the last link: INVALID_ARGUMENT
    cc = next(ln for ln in got if ln.startswith("cc_settings "))
    assert cc.split()[1] == "0", got
    cc2 = next(ln for ln in got if ln.startswith("cc_settings_v2 "))
    assert cc2.split()[1] == "25", got  # ARGUMENT_VERSION_MISMATCH, from the library
