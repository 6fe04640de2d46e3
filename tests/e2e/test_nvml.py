"""NVML remoting against the stand-in: a program loading libnvidia-ml.so.1
through ctypes gets gpuwire's client library, whose answers come from the
server's NVML (here the stand-in NVML) over a session of its own, agree with
what libcuda reports, and follow NVML's error conventions; `gpuwire smi`
prints them; the generated sources are current; CUDA_VISIBLE_DEVICES reaches
the worker's driver as the real driver would read it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import GPUWIRE, ROOT, explain, gpuwire_env, gw_run
from control_plane import control, log_message  # noqa: F401 (fixture)

from gpuwire import paths, protocol, visible

NVML_SNIPPET = r"""
import ctypes, json, sys
res = {}
def maps(word):
    with open("/proc/self/maps") as f:
        return sorted({l.split()[-1] for l in f if word in l and len(l.split()) >= 6})
nv = ctypes.CDLL("libnvidia-ml.so.1")
nv.nvmlErrorString.restype = ctypes.c_char_p
count = ctypes.c_uint(99)
res["before_init"] = nv.nvmlDeviceGetCount_v2(ctypes.byref(count))
res["init"] = nv.nvmlInit_v2()
res["count_rc"] = nv.nvmlDeviceGetCount_v2(ctypes.byref(count)); res["count"] = count.value
legacy = ctypes.c_uint(0)
res["legacy_count_rc"] = nv.nvmlDeviceGetCount(ctypes.byref(legacy)); res["legacy_count"] = legacy.value
h = ctypes.c_void_p()
res["handle_rc"] = nv.nvmlDeviceGetHandleByIndex_v2(0, ctypes.byref(h))
buf = ctypes.create_string_buffer(96)
res["name_rc"] = nv.nvmlDeviceGetName(h, buf, 96); res["name"] = buf.value.decode()
res["short_name_rc"] = nv.nvmlDeviceGetName(h, buf, 4)
res["uuid_rc"] = nv.nvmlDeviceGetUUID(h, buf, 96); res["uuid"] = buf.value.decode()
h2 = ctypes.c_void_p()
res["by_uuid_rc"] = nv.nvmlDeviceGetHandleByUUID(buf.value, ctypes.byref(h2)); res["by_uuid_same"] = h2.value == h.value
class Pci(ctypes.Structure):
    _fields_ = [("busIdLegacy", ctypes.c_char * 16), ("domain", ctypes.c_uint), ("bus", ctypes.c_uint),
                ("device", ctypes.c_uint), ("pciDeviceId", ctypes.c_uint), ("pciSubSystemId", ctypes.c_uint),
                ("busId", ctypes.c_char * 32)]
pci = Pci()
res["pci_rc"] = nv.nvmlDeviceGetPciInfo_v3(h, ctypes.byref(pci))
res["bus_id"] = pci.busId.decode(); res["bus_id_legacy"] = pci.busIdLegacy.decode()
class Mem(ctypes.Structure):
    _fields_ = [("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]
class Mem2(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint), ("total", ctypes.c_ulonglong), ("reserved", ctypes.c_ulonglong),
                ("free", ctypes.c_ulonglong), ("used", ctypes.c_ulonglong)]
m = Mem()
res["mem_rc"] = nv.nvmlDeviceGetMemoryInfo(h, ctypes.byref(m)); res["mem_total"] = m.total
m2 = Mem2(); m2.version = ctypes.sizeof(Mem2) | (2 << 24)
res["mem2_rc"] = nv.nvmlDeviceGetMemoryInfo_v2(h, ctypes.byref(m2)); res["mem2_total"] = m2.total
m2.version = 1
res["mem2_bad_version_rc"] = nv.nvmlDeviceGetMemoryInfo_v2(h, ctypes.byref(m2))
major, minor = ctypes.c_int(), ctypes.c_int()
res["cc_rc"] = nv.nvmlDeviceGetCudaComputeCapability(h, ctypes.byref(major), ctypes.byref(minor))
res["cc"] = [major.value, minor.value]
n = ctypes.c_uint(0)
res["procs_probe_rc"] = nv.nvmlDeviceGetComputeRunningProcesses_v3(h, ctypes.byref(n), None); res["procs_n"] = n.value
res["error_string"] = nv.nvmlErrorString(3).decode()
res["unforwarded_rc"] = nv.nvmlDeviceSetComputeMode(h, 0)
res["missing_in_server_nvml_rc"] = nv.nvmlDeviceGetFanSpeed(h, ctypes.byref(n))
res["bad_handle_rc"] = nv.nvmlDeviceGetName(ctypes.c_void_p(0x12345678), buf, 96)
res["libcuda_loaded_by_nvml"] = maps("libcuda")
# the same device through libcuda
cu = ctypes.CDLL("libcuda.so.1")
res["cu_init"] = cu.cuInit(0)
dev = ctypes.c_int()
cu.cuDeviceGet(ctypes.byref(dev), 0)
u = ctypes.create_string_buffer(16)
res["cu_uuid_rc"] = cu.cuDeviceGetUuid_v2(u, dev)
x = u.raw.hex(); res["cu_uuid"] = f"GPU-{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"
bus = ctypes.create_string_buffer(32)
res["cu_bus_rc"] = cu.cuDeviceGetPCIBusId(bus, 32, dev); res["cu_bus"] = bus.value.decode()
h3 = ctypes.c_void_p()
res["by_cu_bus_rc"] = nv.nvmlDeviceGetHandleByPciBusId_v2(bus.value, ctypes.byref(h3))
res["by_cu_bus_same"] = h3.value == h.value
res["shutdown"] = nv.nvmlShutdown()
res["after_shutdown"] = nv.nvmlDeviceGetCount_v2(ctypes.byref(count))
res["nvml_maps"] = maps("libnvidia-ml")
print("RESULT " + json.dumps(res))
"""

NVML_SUCCESS, NVML_ERROR_UNINITIALIZED, NVML_ERROR_INVALID_ARGUMENT, NVML_ERROR_NOT_SUPPORTED = 0, 1, 2, 3
NVML_ERROR_INSUFFICIENT_SIZE, NVML_ERROR_FUNCTION_NOT_FOUND, NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 7, 13, 25
STANDIN_UUID = "GPU-67707577-6972-652d-7374-616e64696e01"


def run_snippet(server, env=None, timeout=60):
    result = gw_run([sys.executable, "-c", NVML_SNIPPET], server=server.address, env=env, timeout=timeout)
    assert result.returncode == 0, explain(result, server)
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, explain(result, server)
    return json.loads(lines[-1][len("RESULT "):]), result


def test_nvml_through_gpuwire(server):
    res, result = run_snippet(server)
    assert res["before_init"] == NVML_ERROR_UNINITIALIZED, res
    assert res["init"] == NVML_SUCCESS, explain(result, server)
    assert (res["count_rc"], res["count"]) == (NVML_SUCCESS, 1), res
    assert (res["legacy_count_rc"], res["legacy_count"]) == (NVML_SUCCESS, 1), res
    assert res["handle_rc"] == NVML_SUCCESS, res
    assert (res["name_rc"], res["name"]) == (NVML_SUCCESS, "gpuwire CPU stand-in"), res
    assert res["short_name_rc"] == NVML_ERROR_INSUFFICIENT_SIZE, res
    assert (res["uuid_rc"], res["uuid"]) == (NVML_SUCCESS, STANDIN_UUID), res
    assert res["by_uuid_rc"] == NVML_SUCCESS and res["by_uuid_same"], res
    assert res["pci_rc"] == NVML_SUCCESS and res["bus_id"] == "00000000:00:00.0", res
    assert (res["mem_rc"], res["mem_total"]) == (NVML_SUCCESS, 8 << 30), res
    assert (res["mem2_rc"], res["mem2_total"]) == (NVML_SUCCESS, 8 << 30), res
    assert res["mem2_bad_version_rc"] == NVML_ERROR_ARGUMENT_VERSION_MISMATCH, res
    assert (res["cc_rc"], res["cc"]) == (NVML_SUCCESS, [9, 0]), res
    # the count comes back on INSUFFICIENT_SIZE: the usual two-call pattern works
    assert (res["procs_probe_rc"], res["procs_n"]) == (NVML_ERROR_INSUFFICIENT_SIZE, 1), res
    assert res["error_string"] == "Not Supported", res
    assert res["unforwarded_rc"] == NVML_ERROR_NOT_SUPPORTED, res
    assert "nvmlDeviceSetComputeMode is not supported by gpuwire" in result.stderr, result.stderr
    assert res["missing_in_server_nvml_rc"] == NVML_ERROR_FUNCTION_NOT_FOUND, res
    assert res["bad_handle_rc"] == NVML_ERROR_INVALID_ARGUMENT, res
    # NVML alone never loads libcuda; its library is gpuwire's
    assert res["libcuda_loaded_by_nvml"] == [], res
    assert res["nvml_maps"] == [os.path.realpath(paths.NATIVE_DIR / paths.NVML_LIB)], res
    # consistent with libcuda
    assert res["cu_init"] == 0 and res["cu_uuid_rc"] == 0 and res["cu_bus_rc"] == 0, res
    assert res["uuid"] == res["cu_uuid"], res
    assert res["bus_id_legacy"] == res["cu_bus"], res
    assert res["by_cu_bus_rc"] == NVML_SUCCESS and res["by_cu_bus_same"], res
    assert res["shutdown"] == NVML_SUCCESS and res["after_shutdown"] == NVML_ERROR_UNINITIALIZED, res


def test_nvml_session_takes_no_lease(server):
    """With an exclusive lease held by the process's own libcuda session, NVML
    must still answer (a lease would queue behind it forever)."""
    res, result = run_snippet(server, env={"GPUWIRE_LEASE": "exclusive"})
    assert res["init"] == NVML_SUCCESS and res["cu_init"] == 0, explain(result, server)
    assert res["by_cu_bus_rc"] == NVML_SUCCESS, res


def test_smi(server):
    r = subprocess.run(GPUWIRE + ["smi", "--server", server.address], capture_output=True, text=True, timeout=120,
                       env=gpuwire_env())
    assert r.returncode == 0, explain(r, server)
    out = r.stdout
    for text in ("gpuwire CPU stand-in", STANDIN_UUID, "00000000:00:00.0", "0MiB / 8192MiB", "CUDA Version: 13.0",
                 "40C", "gpuwire-worker", "1 device(s) visible"):
        assert text in out, f"{text!r} missing from:\n{out}"
    j = subprocess.run(GPUWIRE + ["smi", "--server", server.address, "--json", "--no-cuda"], capture_output=True,
                       text=True, timeout=120, env=gpuwire_env())
    assert j.returncode == 0, explain(j, server)
    report = json.loads(j.stdout)
    assert "cuda" not in report and report["nvml"]["gpus"][0]["uuid"] == STANDIN_UUID, report


def test_smi_without_server():
    from conftest import free_port

    r = subprocess.run(GPUWIRE + ["smi", "--server", f"127.0.0.1:{free_port()}", "--no-cuda"], capture_output=True,
                       text=True, timeout=120, env=gpuwire_env())
    assert r.returncode == 1, explain(r)
    assert "Driver Not Loaded" in r.stdout and "cannot reach the gpuwire server" in r.stderr, explain(r)


def test_generated_nvml_sources_are_current():
    r = subprocess.run([sys.executable, str(ROOT / "codegen" / "gen_nvml.py"), "--check"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr + r.stdout


def test_every_nvml_symbol_is_exported():
    out = subprocess.run(["nm", "-D", "--defined-only", str(paths.NATIVE_DIR / paths.NVML_LIB)], capture_output=True,
                         text=True, check=True).stdout
    exported = {ln.split()[-1] for ln in out.splitlines() if ln.strip()}
    wanted = {s.strip() for s in (ROOT / "codegen" / "nvml_symbols.txt").read_text().split() if s.strip()}
    assert wanted <= exported, sorted(wanted - exported)[:20]
    assert all(s.startswith("nvml") for s in exported), sorted(s for s in exported if not s.startswith("nvml"))


# --- CUDA_VISIBLE_DEVICES / CUDA_DEVICE_ORDER --------------------------------

def test_env_record_round_trip_and_refusals():
    ext = protocol.pack_ext(env={"CUDA_VISIBLE_DEVICES": "1,GPU-6770", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"},
                            nvml_only=True)
    got = protocol.parse_ext(ext)
    assert dict(got.env) == {"CUDA_VISIBLE_DEVICES": "1,GPU-6770", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    assert got.nvml_only
    bad = [b"LD_PRELOAD=/x.so", b"CUDA_VISIBLE_DEVICES=0\0CUDA_VISIBLE_DEVICES=1", b"CUDA_VISIBLE_DEVICES=$(id)",
           b"CUDA_VISIBLE_DEVICES"]
    for value in bad:
        with pytest.raises(protocol.ProtocolError):
            protocol.parse_ext(protocol.pack_ext(extra=[(protocol.EXT_ENV, value)]))


@pytest.mark.parametrize("server_env, lease, count, client, want", [
    ({}, None, 2, {}, None),                                                  # nothing asked: the server's own
    ({}, None, 2, {"CUDA_VISIBLE_DEVICES": "1"}, {"CUDA_VISIBLE_DEVICES": "1"}),
    ({"CUDA_VISIBLE_DEVICES": "2,3"}, None, 2, {"CUDA_VISIBLE_DEVICES": "1,0,7,0"},
     {"CUDA_VISIBLE_DEVICES": "3,2"}),                                        # indices into the server's list
    ({}, frozenset([1]), 2, {}, {"CUDA_VISIBLE_DEVICES": "1"}),               # a lease on GPU 1 of 2
    ({}, frozenset([1]), 2, {"CUDA_VISIBLE_DEVICES": "0", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"},
     {"CUDA_VISIBLE_DEVICES": "1"}),                                          # its device 0; server's order kept
    ({}, frozenset([1]), 2, {"CUDA_VISIBLE_DEVICES": "1"}, {"CUDA_VISIBLE_DEVICES": "-1"}),  # no such device
    ({}, None, 1, {"CUDA_VISIBLE_DEVICES": "GPU-abc,-1,0", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"},
     {"CUDA_VISIBLE_DEVICES": "GPU-abc", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}),
])
def test_worker_visible_devices(server_env, lease, count, client, want):
    got = visible.worker_env(server_env, lease, count, client)
    if want is None:
        assert got is None
    else:
        assert {k: got[k] for k in want} == want and set(got) - set(server_env) <= set(want)


def test_client_sends_visible_devices(control, monkeypatch):
    """gpuwire's libcuda sends CUDA_VISIBLE_DEVICES in its HELLO; the server
    applies it to the worker's driver (fake worker: reports what it got)."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    srv, log = control(device_count=2)
    address = f"{srv.address[0]}:{srv.address[1]}"
    snippet = "import ctypes, os; ctypes.CDLL('libcuda.so.1').cuInit(0); print(os.getpid())"
    r = gw_run([sys.executable, "-c", snippet], server=address, timeout=60,
               env={"CUDA_VISIBLE_DEVICES": "1,0", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"})
    assert r.stdout.split(), explain(r)
    pid = int(r.stdout.split()[-1])
    line = log.wait_for(rf"fakeworker .*pid={pid} ")
    info = json.loads(log_message(line).split("fakeworker ", 1)[1])
    assert info["visible"] == "1,0", info


def _nvml_define(name: str) -> int:
    import re

    text = (ROOT / "native" / "generated" / "nvml_ops.h").read_text()
    return int(re.search(rf"#define {name} (0x[0-9a-f]+|\d+)", text).group(1), 0)


def test_worker_refuses_count_larger_than_buffer(server):
    """A request whose buffer is smaller than the count NVML will trust ends
    the session before NVML is called (the worker must never overflow)."""
    import socket
    import struct
    import time

    from conftest import client_api_digest

    host, port = server.address.rsplit(":", 1)
    digest = client_api_digest() ^ _nvml_define("GW_NVML_API_DIGEST")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(protocol.pack_hello(os.getpid(), "testhost", "hostile", digest, protocol.pack_ext(nvml_only=True)))
        hdr, _ = protocol.recv_frame(s, time.monotonic() + 10)
        assert hdr.op == protocol.OP_HELLO_OK
        # nvmlDeviceGetName(device 0, name: room for 1 byte, length 1000)
        payload = struct.pack("<QIQ", 0, 1, 1000)
        s.sendall(protocol.pack_frame(_nvml_define("GW_NVML_OP_nvmlDeviceGetName"), payload, seq=1))
        hdr, payload = protocol.recv_frame(s, time.monotonic() + 10)
        assert hdr.op == protocol.OP_ERROR, hdr
        code, msg = protocol.parse_error(payload)
        assert code == protocol.ERR_MALFORMED and "fewer than its count" in msg, msg
