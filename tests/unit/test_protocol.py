"""src/gpuwire/protocol.py mirrors native/common/wire.h: constants, sizes and
field offsets are checked against the header itself (and against gcc's layout)."""

import re
import shutil
import struct
import subprocess

import pytest

from conftest import ROOT
from gpuwire import protocol

WIRE_H = ROOT / "native" / "common" / "wire.h"


def c_int(expr: str) -> int:
    expr = re.sub(r"\((?:uint64_t|uint32_t)\)", "", expr.strip())  # casts carry no value
    expr = re.sub(r"(\d+)(?:[uU]|ull|ULL)\b", r"\1", expr.strip().strip("()"))
    assert re.fullmatch(r"[\d\s*+<()x]+", expr), expr
    return int(eval(expr, {"__builtins__": {}}))  # only digits and * + << ( ) reach here


def wire_constants() -> dict[str, int]:
    text = WIRE_H.read_text()
    consts = {}
    for name, value in re.findall(r"#define\s+(GW_\w+)\s+([^\n/]+)", text):
        if name in ("GW_HELLO_MAGIC", "GPUWIRE_WIRE_H") or not re.search(r"\d", value):
            continue
        consts[name] = c_int(value)
    for name, value in re.findall(r"^\s*(GW_\w+)\s*=\s*([^,\n/]+)", text, re.M):
        consts[name] = c_int(value)
    return consts


def test_constants_match_wire_h():
    consts = wire_constants()
    assert len(consts) >= 15, consts
    for name, value in consts.items():
        py_name = name[len("GW_"):]
        assert hasattr(protocol, py_name), f"protocol.py lacks {py_name} (wire.h {name} = {value})"
        assert getattr(protocol, py_name) == value, f"{py_name} = {getattr(protocol, py_name)}, wire.h says {value}"
    assert 'GW_HELLO_MAGIC "GPUWIRE\\0"' in WIRE_H.read_text()
    assert protocol.HELLO_MAGIC == b"GPUWIRE\0"


def test_struct_sizes_match_static_asserts():
    sizes = dict(re.findall(r"sizeof\((\w+)\)\s*==\s*(\d+)", WIRE_H.read_text()))
    assert int(sizes["gw_hdr"]) == protocol.HEADER.size
    assert int(sizes["gw_hello"]) == protocol.HELLO.size
    assert int(sizes["gw_hello_ok"]) == protocol.HELLO_OK.size
    assert int(sizes["gw_lane_grant"]) == protocol.LANE_GRANT.size
    assert int(sizes["gw_lane_hello"]) == protocol.LANE_HELLO.size


LAYOUT_C = r"""
#include <stdio.h>
#include <stddef.h>
#include "wire.h"
#define F(t, f) printf("%s.%s %zu %zu\n", #t, #f, offsetof(t, f), sizeof(((t *)0)->f))
int main(void) {
    F(gw_hdr, len); F(gw_hdr, op); F(gw_hdr, flags); F(gw_hdr, tid); F(gw_hdr, seq);
    F(gw_hello, magic); F(gw_hello, proto_version); F(gw_hello, api_digest); F(gw_hello, pid);
    F(gw_hello, host_len); F(gw_hello, prog_len);
    F(gw_hello_ok, proto_version); F(gw_hello_ok, driver_version); F(gw_hello_ok, device_count);
    F(gw_hello_ok, flags); F(gw_hello_ok, driver_desc);
    F(gw_lane_grant, session); F(gw_lane_grant, lanes); F(gw_lane_grant, token);
    F(gw_lane_hello, magic); F(gw_lane_hello, session); F(gw_lane_hello, lane); F(gw_lane_hello, token);
    return 0;
}
"""

FIELDS = {
    "gw_hdr": (protocol.HEADER, ["len", "op", "flags", "tid", "seq"]),
    "gw_hello": (protocol.HELLO, ["magic", "proto_version", "api_digest", "pid", "host_len", "prog_len"]),
    "gw_hello_ok": (protocol.HELLO_OK, ["proto_version", "driver_version", "device_count", "flags", "driver_desc"]),
    "gw_lane_grant": (protocol.LANE_GRANT, ["session", "lanes", "token"]),
    "gw_lane_hello": (protocol.LANE_HELLO, ["magic", "session", "lane", "token"]),
}


def _py_layout(st: struct.Struct, names: list[str]) -> dict[str, tuple[int, int]]:
    codes = re.findall(r"(\d*)([a-zA-Z])", st.format.lstrip("<"))
    out, off = {}, 0
    for name, (count, code) in zip(names, codes):
        size = struct.calcsize("<" + count + code)
        out[name] = (off, size)
        off += size
    return out


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")
def test_field_offsets_match_c_layout(tmp_path):
    src = tmp_path / "layout.c"
    src.write_text(LAYOUT_C)
    exe = tmp_path / "layout"
    subprocess.run(["gcc", "-std=c11", "-Wall", "-Werror", "-I", str(WIRE_H.parent), str(src), "-o", str(exe)],
                   check=True)
    c_layout = {}
    for line in subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.splitlines():
        field, off, size = line.split()
        c_layout[field] = (int(off), int(size))
    for struct_name, (st, names) in FIELDS.items():
        for name, layout in _py_layout(st, names).items():
            assert c_layout[f"{struct_name}.{name}"] == layout, f"{struct_name}.{name}"


def test_hello_round_trip():
    frame = protocol.pack_hello(4242, "hôst", "prog", 0xDEADBEEF)
    hdr = protocol.unpack_header(frame[:16])
    assert hdr.op == protocol.OP_HELLO and hdr.length == len(frame) - 16
    protocol.check_hello_header(hdr)
    hello = protocol.parse_hello(frame[16:])
    assert hello == protocol.Hello(protocol.PROTO_VERSION, 0xDEADBEEF, 4242, "hôst", "prog")


def test_hello_names_limit():
    protocol.parse_hello(protocol.pack_hello_payload(1, "h" * 255, "p" * 255, 0))
    with pytest.raises(ValueError):
        protocol.pack_hello_payload(1, "h" * 256, "p", 0)


@pytest.mark.parametrize("payload, code, words", [
    (protocol.pack_hello_payload(1, "h", "p", 0, magic=b"GPUWIRE!"), protocol.ERR_MALFORMED, "magic"),
    (protocol.pack_hello_payload(1, "h", "p", 0, proto_version=1), protocol.ERR_VERSION, "version 1"),
    (protocol.pack_hello_payload(1, "h", "p", 0)[:-1], protocol.ERR_MALFORMED, "name lengths say"),
    (protocol.pack_hello_payload(1, "h", "p", 0) + b"x", protocol.ERR_MALFORMED, "name lengths say"),
    (protocol.HELLO.pack(protocol.HELLO_MAGIC, protocol.PROTO_VERSION, 0, 1, 300, 0) + b"h" * 300, protocol.ERR_MALFORMED, "exceed"),
    (b"\0" * 23, protocol.ERR_MALFORMED, "outside"),
    (b"\0" * (protocol.HELLO_MAX_LEN + 1), protocol.ERR_MALFORMED, "outside"),
])
def test_parse_hello_rejects(payload, code, words):
    with pytest.raises(protocol.ProtocolError) as ei:
        protocol.parse_hello(payload)
    assert ei.value.code == code and words in ei.value.message


def test_header_limits():
    with pytest.raises(protocol.ProtocolError):
        protocol.unpack_header(protocol.pack_header(protocol.OP_REPLY, protocol.MAX_PAYLOAD + 1))
    with pytest.raises(protocol.ProtocolError):
        protocol.unpack_header(b"\0" * 15)
    assert protocol.unpack_header(protocol.pack_header(7, protocol.MAX_PAYLOAD, 1, 2, 3)) == \
        protocol.Header(protocol.MAX_PAYLOAD, 7, 1, 2, 3)
    with pytest.raises(protocol.ProtocolError):
        protocol.check_hello_header(protocol.Header(24, protocol.OP_REPLY, 0, 0, 0))


def test_error_round_trip():
    frame = protocol.pack_error(protocol.ERR_VERSION, "späte version", seq=9)
    hdr = protocol.unpack_header(frame[:16])
    assert (hdr.op, hdr.seq, hdr.length) == (protocol.OP_ERROR, 9, len(frame) - 16)
    assert protocol.parse_error(frame[16:]) == (protocol.ERR_VERSION, "späte version")
    long = protocol.pack_error(1, "é" * 5000)
    assert len(long) - 16 - 4 <= protocol.ERROR_MESSAGE_MAX
    protocol.parse_error(long[16:])[1].encode("utf-8")  # cut on a character boundary
    with pytest.raises(protocol.ProtocolError):
        protocol.parse_error(b"\1\0")


def test_hello_ok_parse():
    payload = protocol.HELLO_OK.pack(1, 13000, 2, 0, b"gpuwire CPU stand-in")
    ok = protocol.parse_hello_ok(payload)
    assert ok == protocol.HelloOk(1, 13000, 2, 0, "gpuwire CPU stand-in")
    with pytest.raises(protocol.ProtocolError):
        protocol.parse_hello_ok(payload[:-1])
    with pytest.raises(protocol.ProtocolError):  # a grant without OK_LANES
        protocol.parse_hello_ok(payload + protocol.LANE_GRANT.pack(5, 3, bytes(16)))
    granted = protocol.HELLO_OK.pack(1, 13000, 2, protocol.OK_LANES, b"x") + protocol.LANE_GRANT.pack(5, 3, b"t" * 16)
    assert protocol.parse_hello_ok(granted).lanes == protocol.LaneGrant(5, 3, b"t" * 16)
    with pytest.raises(protocol.ProtocolError):  # OK_LANES without its grant
        protocol.parse_hello_ok(granted[:protocol.HELLO_OK_SIZE])


def test_lane_hello_parse():
    frame = protocol.pack_lane_hello(12, 2, b"k" * 16)
    hdr = protocol.unpack_header(frame[:16])
    lane = protocol.parse_lane_hello(hdr, frame[16:])
    assert (lane.session, lane.lane, lane.raw) == (12, 2, frame[16:])
    for bad in (protocol.pack_lane_hello(1, 0, b"k" * 16, magic=b"NOTGPUWR"),
                protocol.pack_lane_hello(1, protocol.LANES_MAX, b"k" * 16)):
        with pytest.raises(protocol.ProtocolError):
            protocol.parse_lane_hello(protocol.unpack_header(bad[:16]), bad[16:])
    with pytest.raises(protocol.ProtocolError):
        protocol.parse_lane_hello(hdr._replace(flags=1), frame[16:])
