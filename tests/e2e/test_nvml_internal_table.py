"""NVML's private export table (issue 14: stock nvidia-smi needs it) through
gpuwire against the stand-in NVML: tests/programs/nvml_table.c fetches table
6c3efec4-8fc9-4e6c-a327-ee696e12f7c4 from gpuwire's libnvidia-ml.so.1 and calls
its slots. Slot 81 writes the device's short bus id from the public calls;
the process lists, the host's max PCIe generation, the part number (231) and
the sparse mode come from the stand-in's own table through the worker
(NVML_TABLE_CALL), the process lists filtered to this client's processes;
slot 26 (nvidia-smi's log hook) touches nothing; unknown slots give the mock
NVML's answer. Then raw
NVML_TABLE_CALL frames a hostile client could send: a refused slot, a huge
capacity, an unknown or null device each get a clean error and the session
goes on; a cut frame ends it."""

from __future__ import annotations

import os
import re
import shutil
import socket
import struct
import subprocess
import time

import pytest

from conftest import ROOT, client_api_digest, explain, gw_run, start_server

from gpuwire import protocol, wire_generated as wire

NVML_SUCCESS, NVML_ERROR_INVALID_ARGUMENT, NVML_ERROR_NOT_SUPPORTED = 0, 2, 3
NVML_ERROR_NO_PERMISSION, NVML_ERROR_INSUFFICIENT_SIZE = 4, 7
CUDA_ERROR_INVALID_HANDLE = 400
ENTRY_SIZE = wire.NVML_PROCESS_ENTRY_SIZE
STANDIN_TABLE_PROC_MEM = 64 << 20  # tests/standin/nvml_standin.c SN_TABLE_PROC_MEM
STANDIN_PART_NUMBER = "2330-885-A1"  # SN_TABLE_PART_NUMBER
STANDIN_BUS_ID_LEGACY = "0000:00:00.0"  # bus_legacy_of(0)
CC = shutil.which("gcc") or shutil.which("cc")


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    if not CC:
        pytest.skip("needs a C compiler")
    out = tmp_path_factory.mktemp("nvmltable") / "nvml_table"
    src = ROOT / "tests" / "programs" / "nvml_table.c"
    subprocess.run([CC, "-Wall", "-Wextra", "-Werror", "-o", str(out), str(src), "-ldl"], check=True)
    return out


def _answers(result) -> dict[str, list[str]]:
    return {ln.split()[0]: ln.split()[1:] for ln in result.stdout.splitlines() if ln.strip()}


def test_table_through_gpuwire(server, program):
    r = gw_run([str(program)], server=server.address, env={"GPUWIRE_DEBUG": "1"}, timeout=60)
    assert r.returncode == 0, explain(r, server)
    a = _answers(r)
    assert a["init"] == ["0"], explain(r, server)
    assert a["other_table"] == [str(NVML_ERROR_NOT_SUPPORTED), "1"], a
    assert a["table"] == ["0"] and a["size"] == ["4096"], a
    # slot 81: device 0's busIdLegacy (the stand-in's), cut and terminated when it does not fit
    assert a["slot81"] == ["0", STANDIN_BUS_ID_LEGACY], a
    assert a["slot81_short"] == [str(NVML_ERROR_INSUFFICIENT_SIZE), STANDIN_BUS_ID_LEGACY[:4], "1"], a
    assert a["slot81_upper_half"] == a["slot81_short"], a
    assert a["slot81_past_last"] == [str(NVML_ERROR_INVALID_ARGUMENT)], a
    # slot 231: the stand-in table's part number; a short buffer is refused by it and left alone
    assert a["slot231"] == ["0", STANDIN_PART_NUMBER], a
    assert a["slot231_short"] == [str(NVML_ERROR_INSUFFICIENT_SIZE), "1"], a
    assert a["slot231_no_buffer"] == [str(NVML_ERROR_INVALID_ARGUMENT)], a
    # slot 26: nvidia-smi's log hook, SUCCESS with its arguments untouched
    assert a["slot26"] == ["0", "hello"], a
    # process lists: the stand-in lists the worker and pid 1; only the worker, this client's, comes back
    assert a["slot213_probe"] == [str(NVML_ERROR_INSUFFICIENT_SIZE), "1"], a
    for slot in (213, 214, 215):
        assert a[f"slot{slot}"] == ["0", "1"], a
    m = re.search(r"^entry0 pid (\d+) used (\d+) gi (\d+) ci (\d+)$", r.stdout, re.M)
    assert m, r.stdout
    pid, used, gi, ci = map(int, m.groups())
    assert pid not in (0, 1) and used == STANDIN_TABLE_PROC_MEM and gi == ci == 0xFFFFFFFF, m.group(0)
    assert a["entry0_name"] and os.path.basename(a["entry0_name"][0]) == "gpuwire-worker", a
    assert a["entry1_untouched"] == ["1"], a  # nothing written past the count
    assert a["slot213_null_count"] == [str(NVML_ERROR_INVALID_ARGUMENT)], a
    # the stand-in's host max PCIe generation and its unsupported sparse mode (the value left alone)
    assert a["slot230"] == ["0", "5"], a
    assert a["slot249"] == [str(NVML_ERROR_NOT_SUPPORTED), "99"], a
    # a handle the server never gave: refused, nothing written, and the session carries on
    assert a["slot230_unknown_device"] == [str(NVML_ERROR_INVALID_ARGUMENT), "99"], a
    assert a["slot230_again"] == ["0", "5"], a
    # unknown slots: the mock's answer (SUCCESS; 0 written for a device), a reset refused
    assert a["slot100_device"] == ["0", "0"], a
    assert a["slot100_other"] == ["0", "77"], a
    assert a["slot20"] == [str(NVML_ERROR_NO_PERMISSION)], a
    assert a["slot511"] == ["0"], a
    # GPUWIRE_DEBUG names the slots nvidia-smi used and the table ids it asked for
    assert re.search(r"NVML table slot 100 \(.*\): unknown: the mock's answer", r.stderr), r.stderr
    assert "unknown NVML export table 00000201-0000-0000-0000-000000000000" in r.stderr, r.stderr


# --- hostile frames ------------------------------------------------------------

def _define(header: str, name: str) -> int:
    text = (ROOT / "native" / "generated" / header).read_text()
    return int(re.search(rf"#define {name} (0x[0-9a-f]+|\d+)", text).group(1), 0)


class _Session:
    def __init__(self, sock: socket.socket):
        self.sock, self.seq = sock, 0

    def call(self, op: int, payload: bytes):
        self.seq += 1
        self.sock.sendall(protocol.pack_frame(op, payload, seq=self.seq))
        return protocol.recv_frame(self.sock, time.monotonic() + 10)

    def table(self, slot: int, device: int, capacity: int):
        hdr, payload = self.call(wire.OP_NVML_TABLE_CALL, wire.NVML_TABLE_CALL_REQ.pack(slot, device, capacity))
        assert hdr.op == protocol.OP_REPLY, (hdr, payload)
        if len(payload) == 4:
            return struct.unpack("<i", payload)[0], None, None, b""
        result, status, value = wire.NVML_TABLE_CALL_REP.unpack_from(payload)
        return result, status, value, payload[wire.NVML_TABLE_CALL_REP.size:]


def _open(server) -> tuple[socket.socket, _Session, int]:
    """An NVML-only session, NVML initialised: the socket, the session and device 0's id."""
    host, port = server.address.rsplit(":", 1)
    digest = client_api_digest() ^ _define("nvml_ops.h", "GW_NVML_API_DIGEST")
    s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall(protocol.pack_hello(os.getpid(), "testhost", "hostile", digest, protocol.pack_ext(nvml_only=True)))
    hdr, _ = protocol.recv_frame(s, time.monotonic() + 10)
    assert hdr.op == protocol.OP_HELLO_OK
    gw = _Session(s)
    hdr, payload = gw.call(_define("nvml_ops.h", "GW_NVML_OP_nvmlInit_v2"), b"")
    assert payload == struct.pack("<iI", 0, NVML_SUCCESS), payload
    # nvmlDeviceGetHandleByIndex_v2(0, one handle out): i32 0, u32 status, u64 id
    hdr, payload = gw.call(_define("nvml_ops.h", "GW_NVML_OP_nvmlDeviceGetHandleByIndex_v2"), struct.pack("<QI", 0, 1))
    result, status, dev = struct.unpack("<iIQ", payload)
    assert (result, status) == (0, NVML_SUCCESS) and dev, payload
    return s, gw, dev


def test_hostile_table_calls(server):
    s, gw, dev = _open(server)
    with s:

        assert gw.table(230, dev, 0) == (0, NVML_SUCCESS, 5, b"")
        for slot, device, capacity in [(100, dev, 0), (81, dev, 0), (20, dev, 0), (0xFFFFFFFF, dev, 0),
                                       (213, dev, wire.NVML_TABLE_LIST_MAX + 1), (213, dev, 0xFFFFFFFF),
                                       (230, dev, 5), (230, 0, 0), (213, 0, 4)]:
            got = gw.table(slot, device, capacity)
            assert got == (0, NVML_ERROR_INVALID_ARGUMENT, 0, b""), (slot, device, capacity, got)
        result, *_ = gw.table(230, 0x7777000, 0)  # an id the worker never gave
        assert result == CUDA_ERROR_INVALID_HANDLE, result
        # the part number: a string with its NUL, within the capacity; capacity 0 or past
        # NVML_TABLE_STRING_MAX refused; a capacity the stand-in finds too small is its own answer
        assert gw.table(231, dev, 0x50) == (0, NVML_SUCCESS, len(STANDIN_PART_NUMBER) + 1,
                                            STANDIN_PART_NUMBER.encode() + b"\0")
        for capacity in (0, wire.NVML_TABLE_STRING_MAX + 1, 0xFFFFFFFF):
            assert gw.table(231, dev, capacity) == (0, NVML_ERROR_INVALID_ARGUMENT, 0, b""), capacity
        assert gw.table(231, dev, 4) == (0, NVML_ERROR_INSUFFICIENT_SIZE, 0, b"")
        # the session carries on: a list at the largest capacity holds this session's worker alone
        result, status, count, entries = gw.table(213, dev, wire.NVML_TABLE_LIST_MAX)
        assert (result, status, count, len(entries)) == (0, NVML_SUCCESS, 1, ENTRY_SIZE), (result, status, count)
        result, status, count, entries = gw.table(214, dev, 0)
        assert (result, status, count, entries) == (0, NVML_ERROR_INSUFFICIENT_SIZE, 1, b"")
        # a cut request is malformed: the session ends with ERROR
        s.sendall(protocol.pack_frame(wire.OP_NVML_TABLE_CALL, struct.pack("<IQ", 230, dev), seq=99))
        hdr, payload = protocol.recv_frame(s, time.monotonic() + 10)
        assert hdr.op == protocol.OP_ERROR, hdr
        code, msg = protocol.parse_error(payload)
        assert code == protocol.ERR_MALFORMED, msg


@pytest.mark.parametrize("how, lists", [("absent", NVML_ERROR_NOT_SUPPORTED), ("short", NVML_SUCCESS)])
def test_server_nvml_without_the_table(tmp_path, how, lists):
    """A server NVML without the table ("absent"), or whose size word ends
    before slot 230 ("short"): those slots are NVML_ERROR_NOT_SUPPORTED with
    nothing after the status, the others still answer, and the worker says so
    once in its log however often it is asked."""
    srv = start_server(tmp_path / "server.log", env={"GPUWIRE_STANDIN_NVML_TABLE": how})
    try:
        s, gw, dev = _open(srv)
        with s:
            for _ in range(2):
                assert gw.table(230, dev, 0) == (0, NVML_ERROR_NOT_SUPPORTED, 0, b"")
            assert gw.table(249, dev, 0) == (0, NVML_ERROR_NOT_SUPPORTED, 0, b"")
            result, status, count, entries = gw.table(213, dev, 8)
            assert (result, status, count, len(entries)) == (0, lists, 1 if lists == NVML_SUCCESS else 0,
                                                             ENTRY_SIZE if lists == NVML_SUCCESS else 0)
        want = "NVML has no export table" if how == "absent" else "has no slot 230"
        srv.wait_for_log(re.escape(want))  # the worker's lines reach the server's log a moment later
        srv.stop()  # every line written: a second one would be there now
        log = (tmp_path / "server.log").read_text(errors="replace")
        assert log.count(want) == 1, log
    finally:
        srv.stop()
