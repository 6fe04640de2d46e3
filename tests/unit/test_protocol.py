"""The wire's Python side (src/gpuwire/protocol.py over the generated
wire_generated.py): both it and the C header come from codegen/protocol.txt,
so gcc compiling the generated header must agree with the Python constants and
layouts; then the frames the server reads and writes, with their validation."""

import shutil
import struct
import subprocess
import sys

import pytest

from conftest import ROOT
from gpuwire import protocol, wire_generated

sys.path.insert(0, str(ROOT / "codegen"))
import wire_decl  # noqa: E402

DECL = wire_decl.parse(str(ROOT / "codegen" / "protocol.txt"))
needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")


def c_values(tmp_path, header: str, exprs: dict[str, str]) -> dict[str, str]:
    """What gcc makes of C expressions over a generated header: name -> printed value."""
    body = "\n".join(f'    printf("%s %llu\\n", "{k}", (unsigned long long)({v}));' for k, v in exprs.items())
    src = tmp_path / "values.c"
    src.write_text(f'#include <stdio.h>\n#include <stddef.h>\n#include "{header}"\nint main(void) {{\n{body}\n    return 0;\n}}\n')
    exe = tmp_path / "values"
    subprocess.run(["gcc", "-std=gnu11", "-Wall", "-Werror", str(src), "-o", str(exe)], check=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    return dict(line.split(" ", 1) for line in out.splitlines())


@needs_gcc
def test_c_and_python_constants_agree(tmp_path):
    names = {c.name: c.name for c in DECL.consts.values() if isinstance(c.value, int)}
    for prefix, items in (("OP_", DECL.ops), ("F_", DECL.flags), ("ERR_", DECL.errors), ("EXT_", DECL.exts),
                          ("OK_", DECL.oks)):
        names.update({prefix + e.name: prefix + e.name for e in items})
    for group, items in DECL.values.items():
        names.update({f"{group}_{e.name}": f"{group}_{e.name}" for e in items})
    got = c_values(tmp_path, ROOT / "native" / "common" / "wire.h", {k: "GW_" + k for k in names})
    assert len(got) >= 60
    for name, value in got.items():
        assert getattr(wire_generated, name) == int(value), name
    assert protocol.HELLO_MAGIC == b"GPUWIRE\0" == DECL.consts["HELLO_MAGIC"].value


def test_deliver_keeps_the_ids_the_landing_ops_had():
    assert (protocol.OP_DELIVER, protocol.OP_DELIVERED) == (21, 22)
    assert not hasattr(protocol, "OP_LAND")


FIELDS = {
    "gw_hdr": (protocol.HEADER, ["len", "op", "flags", "tid", "seq"]),
    "gw_hello": (protocol.HELLO, ["magic", "proto_version", "api_digest", "pid", "host_len", "prog_len"]),
    "gw_hello_ok": (protocol.HELLO_OK, ["proto_version", "driver_version", "device_count", "flags", "driver_desc"]),
    "gw_lane_grant": (protocol.LANE_GRANT, ["session", "lanes", "token"]),
    "gw_lane_hello": (protocol.LANE_HELLO, ["magic", "session", "lane", "token"]),
}


def _py_layout(st: struct.Struct, names: list[str]) -> dict[str, tuple[int, int]]:
    out, off = {}, 0
    for name, code in zip(names, _codes(st.format)):
        size = struct.calcsize("<" + code)
        out[name] = (off, size)
        off += size
    return out


def _codes(fmt: str) -> list[str]:
    """'<8sIIIHH' -> ['8s', 'I', 'I', 'I', 'H', 'H']"""
    codes, num = [], ""
    for ch in fmt.lstrip("<"):
        if ch.isdigit():
            num += ch
        else:
            codes.append(num + ch)
            num = ""
    return codes


@needs_gcc
def test_field_offsets_match_c_layout(tmp_path):
    exprs = {}
    for struct_name, (_st, names) in FIELDS.items():
        for f in names:
            exprs[f"{struct_name}.{f}.off"] = f"offsetof({struct_name}, {f})"
            exprs[f"{struct_name}.{f}.size"] = f"sizeof((({struct_name} *)0)->{f})"
        exprs[f"{struct_name}.size"] = f"sizeof({struct_name})"
    got = c_values(tmp_path, ROOT / "native" / "common" / "wire.h", exprs)
    for struct_name, (st, names) in FIELDS.items():
        assert int(got[f"{struct_name}.size"]) == st.size, struct_name
        for name, layout in _py_layout(st, names).items():
            assert (int(got[f"{struct_name}.{name}.off"]), int(got[f"{struct_name}.{name}.size"])) == layout, \
                f"{struct_name}.{name}"


@needs_gcc
def test_field_list_codecs_round_trip_the_python_layout(tmp_path):
    """The generated C encoder of DELIVER's request writes what the Python
    struct of the same declaration reads."""
    src = tmp_path / "codec.c"
    src.write_text(f"""#include <stdio.h>
#include "{ROOT / 'native' / 'common' / 'wire.h'}"
int main(void) {{
    gw_deliver_req v = {{.delivery = 7, .src = 0x1000, .n = 4096, .stream = 9, .flags = 1}}, back;
    uint8_t b[GW_DELIVER_REQ_SIZE];
    size_t n = gw_deliver_req_put(b, &v);
    if (n != sizeof b || gw_deliver_req_get(b, n, &back) != n || gw_deliver_req_get(b, n - 1, &back) != 0)
        return 1;
    for (size_t i = 0; i < n; i++) printf("%02x", b[i]);
    return back.flags == 1 && back.n == 4096 ? 0 : 2;
}}
""")
    exe = tmp_path / "codec"
    subprocess.run(["gcc", "-std=gnu11", "-Wall", "-Werror", str(src), "-o", str(exe)], check=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    assert wire_generated.DELIVER_REQ.unpack(bytes.fromhex(out)) == (7, 0x1000, 4096, 9, 1)


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


def test_hello_ok_device_table():
    """OK_DEVICES: device_count DEVICE_INFO records, then each one's attribute pairs (issue #20)."""
    rec = protocol.DEVICE_INFO.pack(0, 0, 8 << 30, b"u" * 16, b"v" * 16, b"gpu", b"0000:01:00.0", 2, 0)
    payload = (protocol.HELLO_OK.pack(protocol.PROTO_VERSION, 13000, 1, protocol.OK_DEVICES, b"x") + rec
               + struct.pack("<4i", 0, 1024, 1, 0))
    ok = protocol.parse_hello_ok(payload)
    assert len(ok.devices) == 1 and ok.devices[0][2] == 8 << 30 and ok.devices[0][5].rstrip(b"\0") == b"gpu"
    for bad in (payload[:-1], payload + b"\0" * 8, payload[:protocol.HELLO_OK_SIZE + 10]):
        with pytest.raises(protocol.ProtocolError):
            protocol.parse_hello_ok(bad)


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
