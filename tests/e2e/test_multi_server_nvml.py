"""NVML over several servers (GPUWIRE_SERVER=a,b; docs/multi-gpu.md "NVML with
several servers"): gpuwire's libnvidia-ml.so.1 joins every server's GPUs into
one list, a's first (each server's in its own PCI order), routes each call to
the server of its device handle, refuses a call that names two servers'
devices, and `gpuwire smi --server a,b` shows all of them with the CUDA
ordinal a program gets. Two stand-in servers on loopback: a with two devices,
b with one of another machine (GPUWIRE_STANDIN_MACHINE=1: its UUID differs)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import GPUWIRE, gpuwire_env, gw_run
from test_multi_server import both, two_servers, why

GIB = 1 << 30
A0, A1 = "GPU-67707577-6972-652d-7374-616e64696e01", "GPU-67707577-6972-652d-7374-616e64696e02"
B0 = "GPU-67707577-6972-652d-7374-616e64696f01"
NVML_SUCCESS, INVALID_ARGUMENT, NOT_SUPPORTED, UNINITIALIZED, NOT_FOUND, FUNCTION_NOT_FOUND = 0, 2, 3, 1, 6, 13

SNIPPET = r"""
import ctypes, json
nv = ctypes.CDLL("libnvidia-ml.so.1")
res = {"init": nv.nvmlInit_v2()}
n = ctypes.c_uint(0)
res["count_rc"] = nv.nvmlDeviceGetCount_v2(ctypes.byref(n)); res["count"] = n.value
legacy = ctypes.c_uint(0)
res["legacy_rc"] = nv.nvmlDeviceGetCount(ctypes.byref(legacy)); res["legacy"] = legacy.value
class Mem(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]
class Pci(ctypes.Structure):
    _fields_ = [("busIdLegacy", ctypes.c_char * 16), ("domain", ctypes.c_uint), ("bus", ctypes.c_uint),
                ("device", ctypes.c_uint), ("pciDeviceId", ctypes.c_uint), ("pciSubSystemId", ctypes.c_uint),
                ("busId", ctypes.c_char * 32)]
handles, devs = [], []
for i in range(n.value):
    h = ctypes.c_void_p()
    d = {"handle_rc": nv.nvmlDeviceGetHandleByIndex_v2(i, ctypes.byref(h))}
    handles.append(h)
    buf = ctypes.create_string_buffer(96)
    d["uuid_rc"] = nv.nvmlDeviceGetUUID(h, buf, 96); d["uuid"] = buf.value.decode()
    m = Mem()
    d["mem_rc"] = nv.nvmlDeviceGetMemoryInfo(h, ctypes.byref(m)); d["total"] = m.total
    pci = Pci()
    d["pci_rc"] = nv.nvmlDeviceGetPciInfo_v3(h, ctypes.byref(pci)); d["bus"] = pci.busId.decode()
    idx = ctypes.c_uint(99)
    d["index_rc"] = nv.nvmlDeviceGetIndex(h, ctypes.byref(idx)); d["index"] = idx.value
    again = ctypes.c_void_p()
    d["by_uuid_rc"] = nv.nvmlDeviceGetHandleByUUID(d["uuid"].encode(), ctypes.byref(again))
    d["by_uuid_same"] = again.value == h.value
    devs.append(d)
res["devices"] = devs
h = ctypes.c_void_p()
res["past_end_rc"] = nv.nvmlDeviceGetHandleByIndex_v2(n.value, ctypes.byref(h))
res["unknown_uuid_rc"] = nv.nvmlDeviceGetHandleByUUID(b"GPU-00000000-0000-0000-0000-000000000000", ctypes.byref(h))
res["by_bus_rc"] = nv.nvmlDeviceGetHandleByPciBusId_v2(b"00000000:00:00.0", ctypes.byref(h))
res["by_bus_is_first"] = h.value == handles[0].value
level = ctypes.c_int(0)
res["ancestor_same_server_rc"] = nv.nvmlDeviceGetTopologyCommonAncestor(handles[0], handles[1], ctypes.byref(level))
res["ancestor_two_servers_rc"] = nv.nvmlDeviceGetTopologyCommonAncestor(handles[0], handles[2], ctypes.byref(level))
res["shutdown"] = nv.nvmlShutdown()
res["after_shutdown_rc"] = nv.nvmlDeviceGetCount_v2(ctypes.byref(n))
print("JSON " + json.dumps(res))
"""


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    a, b = two_servers(tmp_path_factory, "multi_server_nvml")  # the same pair as test_multi_server.py's
    yield a, b
    b.stop()
    a.stop()


def nvml_answers(servers) -> tuple[dict, str]:
    r = gw_run([sys.executable, "-c", SNIPPET], server=both(servers), timeout=120)
    assert r.returncode == 0, why(r, servers)
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("JSON ")]
    assert line, why(r, servers)
    return json.loads(line[-1][5:]), r.stderr


def test_one_nvml_device_list_over_two_servers(servers):
    res, _ = nvml_answers(servers)
    assert res["init"] == NVML_SUCCESS and res["count_rc"] == NVML_SUCCESS, res
    assert res["count"] == 3 and res["legacy"] == 3, res
    devs = res["devices"]
    assert [d["uuid"] for d in devs] == [A0, A1, B0], devs
    assert [d["total"] for d in devs] == [8 * GIB, 7 * GIB, 8 * GIB], devs  # b's p0: its own 8 GiB
    assert [d["bus"] for d in devs] == ["00000000:00:00.0", "00000000:01:00.0", "00000000:00:00.0"], devs
    assert [d["index"] for d in devs] == [0, 1, 2], devs
    assert all(d[k] == NVML_SUCCESS for d in devs for k in ("handle_rc", "uuid_rc", "mem_rc", "pci_rc", "index_rc",
                                                             "by_uuid_rc")), devs
    assert all(d["by_uuid_same"] for d in devs), devs


def test_lookups_errors_and_calls_across_servers(servers):
    res, stderr = nvml_answers(servers)
    assert res["past_end_rc"] == INVALID_ARGUMENT, res
    assert res["unknown_uuid_rc"] == NOT_FOUND, res
    # two machines may share a bus id: the first server's device answers
    assert res["by_bus_rc"] == NVML_SUCCESS and res["by_bus_is_first"], res
    # a call naming devices of two servers is refused in the client, with a line; one naming
    # a's two devices reaches a, whose stand-in NVML lacks the function (FUNCTION_NOT_FOUND)
    assert res["ancestor_two_servers_rc"] == NOT_SUPPORTED, res
    assert res["ancestor_same_server_rc"] == FUNCTION_NOT_FOUND, res
    assert stderr.count("nvmlDeviceGetTopologyCommonAncestor: its devices are on two different gpuwire servers") == 1, \
        stderr
    assert res["shutdown"] == NVML_SUCCESS and res["after_shutdown_rc"] == UNINITIALIZED, res


def test_smi_shows_the_gpus_of_both_servers(servers):
    r = subprocess.run(GPUWIRE + ["smi", "--json", "--server", both(servers)], capture_output=True, text=True,
                       timeout=120, env=gpuwire_env())
    assert r.returncode == 0, r.stdout + r.stderr
    info = json.loads(r.stdout)
    assert [g["uuid"] for g in info["nvml"]["gpus"]] == [A0, A1, B0], info
    assert [d["uuid"] for d in info["cuda"]["devices"]] == [A0, A1, B0], info


def test_status_checks_every_server_of_a_list(servers):
    r = subprocess.run(GPUWIRE + ["status", "--json", "--rounds", "2", "--bytes", "0", "--server", both(servers)],
                       capture_output=True, text=True, timeout=120, env=gpuwire_env())
    assert r.returncode == 0, r.stdout + r.stderr
    out = json.loads(r.stdout)["servers"]
    assert [o["reachable"] for o in out] == [True, True], out
    assert [o["status"]["driver"]["device_count"] for o in out] == [2, 1], out
    text = subprocess.run(GPUWIRE + ["status", "--rounds", "2", "--bytes", "0", "--server", both(servers)],
                          capture_output=True, text=True, timeout=120, env=gpuwire_env())
    assert text.returncode == 0 and text.stdout.count("== server ") == 2, text.stdout + text.stderr
    # a list with a server that does not answer: the others are still shown, exit status 1
    dead = subprocess.run(GPUWIRE + ["status", "--rounds", "2", "--bytes", "0", "--server",
                                     f"{servers[0].address},127.0.0.1:1"],
                          capture_output=True, text=True, timeout=120, env=gpuwire_env())
    assert dead.returncode == 1 and "not reachable" in dead.stdout and "== server 0" in dead.stdout, \
        dead.stdout + dead.stderr


def test_top_once_shows_every_server_of_a_list(servers):
    r = subprocess.run(GPUWIRE + ["top", "--once", "--server", both(servers)], capture_output=True, text=True,
                       timeout=120, env=gpuwire_env())
    assert r.returncode == 0 and r.stdout.count("== server ") == 2, r.stdout + r.stderr
    # a's two GPUs, then b's one, each under its server's heading
    first, second = r.stdout.split("== server 1")
    assert "  GPU 1 " in first and "  GPU 0 " in second and "  GPU 1 " not in second, r.stdout
    live = subprocess.run(GPUWIRE + ["top", "--server", both(servers)], capture_output=True, text=True,
                          timeout=60, env=gpuwire_env())
    assert live.returncode == 2 and "use --once" in live.stderr, live.stderr
