"""The NVML calls stock nvidia-smi and `nvidia-smi -q` make (issue 14),
through gpuwire against the stand-in NVML: tests/programs/nvml_smi_calls.c
calls each read-only getter gpuwire forwards for nvidia-smi and checks the
stand-in's fixed values arrive (strings with and without a length, inout
versioned structs and their version refusals, field values, the retired
pages' two calls, errors passed through); the event-set calls are answered
in the client (a set that never delivers: native/nvml/events.c). Then a
hostile frame: a page count larger than the buffer sent ends the session
before NVML is called."""

from __future__ import annotations

import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import time

import pytest

from conftest import ROOT, client_api_digest, explain, gw_run

from gpuwire import protocol

sys.path.insert(0, str(ROOT / "codegen"))
import nvml_header  # noqa: E402

NVML_SUCCESS, NVML_ERROR_INVALID_ARGUMENT, NVML_ERROR_NOT_SUPPORTED = 0, 2, 3
NVML_ERROR_INSUFFICIENT_SIZE, NVML_ERROR_TIMEOUT, NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 7, 10, 25
CC = shutil.which("gcc") or shutil.which("cc")


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    if not CC:
        pytest.skip("needs a C compiler")
    out = tmp_path_factory.mktemp("nvmlsmi") / "nvml_smi_calls"
    src = ROOT / "tests" / "programs" / "nvml_smi_calls.c"
    include = os.path.dirname(nvml_header.header_path())
    subprocess.run([CC, "-Wall", "-Wextra", "-Werror", "-I", include, "-o", str(out), str(src), "-ldl"], check=True)
    return out


def _answers(stdout: str) -> dict[str, list[str]]:
    return {ln.split()[0]: ln.split()[1:] for ln in stdout.splitlines() if ln.strip()}


def test_nvidia_smi_calls_through_gpuwire(server, program):
    r = gw_run([str(program)], server=server.address, timeout=60)
    assert r.returncode == 0, explain(r, server)
    assert "missing" not in r.stdout, r.stdout
    a = _answers(r.stdout)
    ok = str(NVML_SUCCESS)
    assert a["init"] == [ok] and a["handle"] == [ok], explain(r, server)
    # strings: out[length], a refusal leaves the buffer alone, a fixed-size one with no length
    assert a["inforom_image"] == [ok, "G520.0200.00.05"], a
    assert a["inforom_image_short"] == [str(NVML_ERROR_INSUFFICIENT_SIZE), "1"], a
    assert a["inforom_ecc"] == [ok, "7.16"], a
    assert a["inforom_power"] == [str(NVML_ERROR_NOT_SUPPORTED)], a
    assert a["gsp"] == [ok, "580.0-standin-gsp"], a
    assert a["validate_inforom"] == [ok], a
    # scalars (device 0)
    expect = {
        "board_id": [ok, str(0x600)], "module_id": [ok, "1"], "accounting_buffer": [ok, "4000"],
        "max_pcie_gen": [ok, "5"], "pcie_replay": [ok, "3"], "accounting_mode": [ok, "0"],
        "retired_pending": [ok, "1"], "virtualization": [ok, "0"], "host_vgpu": [ok, "1"],
        "throttle_current": [ok, "1"], "bbx_flush": [ok, "1765000000000000", "1234"],
        "gom": [ok, "0", "1"], "enc_util": [ok, "3", "167000"], "dec_util": [ok, "4", "167000"],
        "jpg_util": [ok, "5", "167000"], "ofa_util": [ok, "6", "167000"], "enc_stats": [ok, "2", "60", "500"],
        # NOT_SUPPORTED comes back as it is, nothing written
        "auto_boost": [str(NVML_ERROR_NOT_SUPPORTED), "9", "9"], "driver_model": [str(NVML_ERROR_NOT_SUPPORTED), "9"],
    }
    for key, want in expect.items():
        assert a[key] == want, (key, a[key])
    assert a["throttle_supported"][0] == ok and int(a["throttle_supported"][1]) > 1, a
    # structs; the versioned ones carry their version to the stand-in, which checks it
    expect = {
        "bridge": [ok, "1", "1", str(0x01020304)], "pdi": [ok, "5354414e44494e31"],
        "pdi_bad_version": [str(NVML_ERROR_ARGUMENT_VERSION_MISMATCH)], "caps": [ok, "1"], "addressing": [ok, "1"],
        "c2c": [ok, "0"], "fabric": [ok, "7", "3", "ab", "1"], "fabric_v2": [ok, "7", "3"], "vgpu_heterogeneous": [ok, "1"],
        "grid": [ok, "1", "1", "4", "standin", "compute"], "dram_encryption": [ok, "0", "1"],
        "power_profiles": [ok, "5", "4", "4"], "margin_temp": [ok, "47"], "fbc": [ok, "1", "24", "250"],
        "cc_memory": [ok, str(1 << 30), str(1 << 20), str((1 << 30) - (1 << 20))],
        "remap_histogram": [ok, "2560", "1", "2", "3", "4"],
        "remapped_rows": [ok, "1", "2", "3", "4", "0", "1"], "unrepairable": [ok, "1"], "repair": [ok, "0", "1"], "sram": [ok, "5", "2", "1"],
    }
    for key, want in expect.items():
        assert a[key] == want, (key, a[key])
    # arrays: field values answered per entry (fieldId * 1000 + scopeId), ECC counters
    assert a["fields"] == [ok, "1000", "7002", str(NVML_ERROR_INVALID_ARGUMENT), "3"], a
    assert a["fields_none"] == [ok], a
    assert a["total_ecc"] == [ok, "12"], a  # 10 * UNCORRECTED + AGGREGATE + 1
    assert a["mem_error_counter"] == [ok, "112"], a  # 100 * UNCORRECTED + 10 * AGGREGATE + DRAM (2)
    # retired pages: the count needed comes back on INSUFFICIENT_SIZE, then the pages themselves
    assert a["retired_probe"] == [str(NVML_ERROR_INSUFFICIENT_SIZE), "3"], a
    assert a["retired"] == [ok, "3", "1000", "2000", "3000", "0"], a
    assert a["retired_single"] == [ok, "0"], a
    # event sets, answered in the client: created and freed, never delivering
    assert a["event_create"] == [ok, "1"], a
    assert a["event_register"] == [str(NVML_ERROR_NOT_SUPPORTED)], a
    assert a["event_types"] == [ok, "0"], a
    assert a["event_wait"] == [str(NVML_ERROR_TIMEOUT), "1"], a
    assert a["event_free"] == [ok], a
    assert a["event_free_null"] == [str(NVML_ERROR_INVALID_ARGUMENT)], a
    assert a["event_create_null"] == [str(NVML_ERROR_INVALID_ARGUMENT)], a
    assert a["shutdown"] == [ok], a
    # nothing nvidia-smi needs is refused as unsupported any more
    assert "is not supported by gpuwire" not in r.stderr, r.stderr


def _nvml_define(name: str) -> int:
    text = (ROOT / "native" / "generated" / "nvml_ops.h").read_text()
    return int(re.search(rf"#define {name} (0x[0-9a-f]+|\d+)", text).group(1), 0)


def test_worker_refuses_page_count_larger_than_buffer(server):
    """nvmlDeviceGetRetiredPages with *pageCount past the addresses sent: the
    worker must not let NVML write past them (the session ends instead)."""
    host, port = server.address.rsplit(":", 1)
    digest = client_api_digest() ^ _nvml_define("GW_NVML_API_DIGEST")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(protocol.pack_hello(os.getpid(), "testhost", "hostile", digest, protocol.pack_ext(nvml_only=True)))
        hdr, _ = protocol.recv_frame(s, time.monotonic() + 10)
        assert hdr.op == protocol.OP_HELLO_OK
        # (device 0, cause 1, pageCount: 4 bytes holding 1000, addresses: room for 2)
        payload = struct.pack("<QQI", 0, 1, 4) + struct.pack("<I", 1000) + struct.pack("<I", 2)
        s.sendall(protocol.pack_frame(_nvml_define("GW_NVML_OP_nvmlDeviceGetRetiredPages"), payload, seq=1))
        hdr, payload = protocol.recv_frame(s, time.monotonic() + 10)
        assert hdr.op == protocol.OP_ERROR, hdr
        code, msg = protocol.parse_error(payload)
        assert code == protocol.ERR_MALFORMED and "fewer than its count" in msg, msg


def test_worker_refuses_a_struct_version_larger_than_the_bytes_sent(server):
    """nvmlDeviceGetPdi with a `version` naming a 4 KiB layout in a 16-byte
    struct: the real NVML would write that layout past the worker's buffer, so
    the worker answers NVML_ERROR_ARGUMENT_VERSION_MISMATCH without calling it."""
    host, port = server.address.rsplit(":", 1)
    digest = client_api_digest() ^ _nvml_define("GW_NVML_API_DIGEST")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(protocol.pack_hello(os.getpid(), "testhost", "hostile", digest, protocol.pack_ext(nvml_only=True)))
        hdr, _ = protocol.recv_frame(s, time.monotonic() + 10)
        assert hdr.op == protocol.OP_HELLO_OK
        pdi = struct.pack("<IIQ", (1 << 24) | 0x1000, 0, 0)  # nvmlPdi_v1_t: version, (padding), value
        payload = struct.pack("<QI", 0, len(pdi)) + pdi
        s.sendall(protocol.pack_frame(_nvml_define("GW_NVML_OP_nvmlDeviceGetPdi"), payload, seq=1))
        hdr, payload = protocol.recv_frame(s, time.monotonic() + 10)
        assert hdr.op == protocol.OP_REPLY and hdr.seq == 1, (hdr, payload)
        assert struct.unpack_from("<ii", payload) == (0, 25), payload  # the NVML result: ARGUMENT_VERSION_MISMATCH
