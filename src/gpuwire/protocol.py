"""gpuwire wire format, Python side: the frames the server itself reads and writes.

The constants, struct layouts and HELLO extension table come from
codegen/protocol.txt through the generated src/gpuwire/wire_generated.py (the C
side, native/generated/wire_protocol.h, comes from the same declaration);
this module adds parsing with validation and the socket helpers.
docs/protocol.md is the specification. Everything on the wire is little-endian.
parse_hello_ok also checks HELLO_OK's device table (OK_DEVICES) to the byte.
"""

from __future__ import annotations

import re
import socket
import struct
import time
from dataclasses import dataclass
from typing import NamedTuple

from gpuwire.wire_generated import (  # noqa: F401  (re-exported: the server and the tests use these names)
    OP_ADMIN,
    CAS_CODEC_NONE, CAS_CODEC_ZSTD, CAS_MAX_REFS, CAS_TARGET_COPY, CAS_TARGET_STAGE, CLIENT_ID_BIT, COPY_CHUNK,
    ENV_FORWARDED, ENV_VALUE_CHARS, ENV_VALUE_MAX, ERR_DRIVER, ERR_MALFORMED, ERR_REFUSED, ERR_VERSION, ERROR_MESSAGE_MAX,
    ERROR_NAMES, EXT_CODECS, EXT_CRITICAL, EXT_ENV, EXT_GPU, EXT_LEASE_MODE, EXT_MEM_CAP, EXT_NO_WAIT, EXT_NVML,
    EXT_STATUS_PROBE, EXT_TOKEN_PROOF, F_COLLECT, F_HELLO_EXT, F_LANE, F_NOREPLY, HEADER, HEADER_SIZE, HELLO,
    DEVICE_INFO, DEVICE_INFO_SIZE, HELLO_DEVICES_MAX, HELLO_EXT_MAX, HELLO_MAGIC, HELLO_OK, HELLO_OK_SIZE, HELLO_SIZE, LANE_GRANT, LANE_HELLO, LANE_TOKEN_SIZE,
    LANES_MAX, MAC_SIZE, MAX_PAYLOAD, NAME_MAX, NONCE_SIZE, OK_CAS, OK_DEVICES, OK_LANES, OK_STANDIN, OK_ZSTD, OP_BYE,
    OP_CAS_DATA, OP_CAS_REFS, OP_CHALLENGE, OP_DELIVER, OP_DELIVERED, OP_DEVICE_ATTRS, OP_ERROR, OP_FIRST_CALL,
    OP_FUNC_LAYOUT, OP_HELLO, OP_HELLO_OK, OP_LANE, OP_MODULE_INFO, OP_PROOF, OP_QUEUED,
    OP_REPLY, OP_STAGE, OP_STATUS, OP_STDOUT, PROOF_SIZE, PROTO_VERSION, QUEUED_TEXT_MAX, TOKEN_ID_SIZE,
)
from gpuwire.wire_generated import ERROR_REQ as ERROR_CODE  # u32 code, then the message
from gpuwire.wire_generated import QUEUED_REQ as QUEUED  # u32 position, u32 waiting, u32 waited_ms, then a line
from gpuwire.wire_generated import DRIVER_OP_NAMES, OP_NAMES  # request names for logs and status

HELLO_MAX_LEN = HELLO_SIZE + NAME_MAX + NAME_MAX  # without extension records
EXT_RECORD = struct.Struct("<HH")

assert HEADER.size == HEADER_SIZE
assert HELLO.size == HELLO_SIZE
assert HELLO_OK.size == HELLO_OK_SIZE
assert len(HELLO_MAGIC) == 8


def op_name(op: int) -> str:
    """A request's name: a driver call's (cuEventSynchronize), a control op's, or "op N"."""
    if OP_FIRST_CALL <= op < OP_FIRST_CALL + len(DRIVER_OP_NAMES):
        return DRIVER_OP_NAMES[op - OP_FIRST_CALL]
    return OP_NAMES.get(op, f"op {op}")


class ProtocolError(Exception):
    """A frame failed validation. `code` is the OP_ERROR code to answer with."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class Header(NamedTuple):
    length: int
    op: int
    flags: int
    tid: int
    seq: int


@dataclass(frozen=True)
class HelloExt:
    """What a client asked for in its HELLO extension records (defaults when absent)."""
    exclusive: bool = False
    mem_cap: int = 0            # bytes, 0 = no cap
    no_wait: bool = False
    status_probe: bool = False
    gpu: int | None = None      # None: every GPU of the server
    env: tuple[tuple[str, str], ...] = ()  # EXT_ENV: (name, value) of ENV_FORWARDED variables
    nvml_only: bool = False     # EXT_NVML
    gpu_count: int | None = None  # EXT_GPU_COUNT: any that many GPUs
    unknown: tuple[int, ...] = ()  # non-critical types this server skipped


NO_EXT = HelloExt()


class Hello(NamedTuple):
    proto_version: int
    api_digest: int
    pid: int
    host: str
    prog: str
    ext: HelloExt = NO_EXT


class LaneHello(NamedTuple):
    """A lane connection's first frame: which session and lane, and the
    worker's token (checked by the worker, not here)."""
    session: int
    lane: int
    raw: bytes  # the payload as received, handed to the worker with the socket


class LaneGrant(NamedTuple):
    session: int
    lanes: int
    token: bytes


class HelloOk(NamedTuple):
    proto_version: int
    driver_version: int
    device_count: int
    flags: int
    driver_desc: str
    lanes: LaneGrant | None = None  # with OK_LANES: the lanes this session may open
    devices: tuple = ()  # with OK_DEVICES: DEVICE_INFO tuples, one per device (their attributes are not kept)


def pack_header(op: int, length: int, flags: int = 0, tid: int = 0, seq: int = 0) -> bytes:
    return HEADER.pack(length, op, flags, tid, seq)


def unpack_header(data: bytes) -> Header:
    """Decode a 16-byte header; refuses payloads over MAX_PAYLOAD."""
    if len(data) != HEADER_SIZE:
        raise ProtocolError(ERR_MALFORMED, f"frame header is {len(data)} bytes, expected {HEADER_SIZE}")
    hdr = Header(*HEADER.unpack(data))
    if hdr.length > MAX_PAYLOAD:
        raise ProtocolError(ERR_MALFORMED, f"frame payload of {hdr.length} bytes exceeds the {MAX_PAYLOAD}-byte limit")
    return hdr


def pack_frame(op: int, payload: bytes = b"", flags: int = 0, tid: int = 0, seq: int = 0) -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ValueError("payload too large")
    return pack_header(op, len(payload), flags, tid, seq) + payload


def _utf8(text: str | bytes) -> bytes:
    return text if isinstance(text, bytes) else text.encode("utf-8", "replace")


def pack_hello_payload(pid: int, host: str | bytes, prog: str | bytes, api_digest: int,
                       proto_version: int = PROTO_VERSION, magic: bytes = HELLO_MAGIC) -> bytes:
    host_b, prog_b = _utf8(host), _utf8(prog)
    if len(host_b) > NAME_MAX or len(prog_b) > NAME_MAX:
        raise ValueError("host and program names are at most 255 bytes")
    return HELLO.pack(magic, proto_version, api_digest, pid, len(host_b), len(prog_b)) + host_b + prog_b


def pack_hello(pid: int, host: str | bytes, prog: str | bytes, api_digest: int, ext: bytes = b"", **kw) -> bytes:
    """A whole HELLO frame (header + payload), as a client sends it; `ext` is
    packed extension records (pack_ext), which also sets F_HELLO_EXT."""
    payload = pack_hello_payload(pid, host, prog, api_digest, **kw) + ext
    return pack_frame(OP_HELLO, payload, flags=F_HELLO_EXT if ext else 0)


def pack_ext(exclusive: bool | None = None, mem_cap: int | None = None, no_wait: bool | None = None,
             status_probe: bool | None = None, gpu: int | None = None,
             env: dict[str, str] | None = None, nvml_only: bool | None = None, gpu_count: int | None = None,
             extra: list[tuple[int, bytes]] = ()) -> bytes:
    """HELLO extension records for the fields given (None: leave the record out)."""
    given = {"exclusive": exclusive, "mem_cap": mem_cap, "no_wait": no_wait, "status_probe": status_probe,
             "gpu": gpu, "env": env, "nvml_only": nvml_only, "gpu_count": gpu_count}
    recs: list[tuple[int, bytes]] = []
    for typ, (_name, codec, field, _size) in EXT_CODECS.items():  # type order, as the records always went
        value = given[field]
        if value is not None:
            recs.append((typ, _EXT_PACK[codec](value)))
    recs += list(extra)
    return b"".join(EXT_RECORD.pack(t, len(v)) + v for t, v in recs)


_EXT_PACK = {
    "bool": lambda v: struct.pack("<B", 1 if v else 0),
    "u32": lambda v: struct.pack("<I", v),
    "u64": lambda v: struct.pack("<Q", v),
    "env": lambda v: b"\0".join(f"{k}={x}".encode() for k, x in v.items()),
}


def hello_max_len(flags: int) -> int:
    return HELLO_MAX_LEN + (HELLO_EXT_MAX if flags & F_HELLO_EXT else 0)


def check_hello_header(hdr: Header) -> None:
    """Validate the header of the first frame a client sends."""
    if hdr.op != OP_HELLO:
        raise ProtocolError(ERR_MALFORMED, f"first frame must be HELLO (op {OP_HELLO}), got op {hdr.op}")
    if hdr.flags & ~F_HELLO_EXT:
        raise ProtocolError(ERR_MALFORMED, f"HELLO has unknown flags 0x{hdr.flags:04x}")
    top = hello_max_len(hdr.flags)
    if not HELLO_SIZE <= hdr.length <= top:
        raise ProtocolError(ERR_MALFORMED, f"HELLO payload of {hdr.length} bytes is outside {HELLO_SIZE}..{top}")


def parse_lane_hello(hdr: Header, payload: bytes) -> LaneHello:
    """Validate a LANE hello (header already read; payload of hdr.length bytes)."""
    if hdr.flags:
        raise ProtocolError(ERR_MALFORMED, f"LANE hello has unknown flags 0x{hdr.flags:04x}")
    if len(payload) != LANE_HELLO.size:
        raise ProtocolError(ERR_MALFORMED, f"LANE hello of {len(payload)} bytes, expected {LANE_HELLO.size}")
    magic, session, lane, _token = LANE_HELLO.unpack(payload)
    if magic != HELLO_MAGIC:
        raise ProtocolError(ERR_MALFORMED, "LANE hello has a bad magic")
    if lane >= LANES_MAX:
        raise ProtocolError(ERR_MALFORMED, f"LANE hello names lane {lane}; at most {LANES_MAX} lanes")
    return LaneHello(session, lane, bytes(payload))


def pack_lane_hello(session: int, lane: int, token: bytes, magic: bytes = HELLO_MAGIC) -> bytes:
    """A whole LANE hello frame, as a client sends it first on a lane connection."""
    return pack_frame(OP_LANE, LANE_HELLO.pack(magic, session, lane, token))


def _name(raw: bytes, what: str) -> str:
    if b"\0" in raw:
        raise ProtocolError(ERR_MALFORMED, f"HELLO {what} name contains a NUL byte")
    return raw.decode("utf-8", "replace")


def parse_hello(payload: bytes, flags: int = 0) -> Hello:
    """Validate and decode a HELLO payload; `flags` are its header's (F_HELLO_EXT:
    extension records follow the names). Raises ProtocolError with the code to answer."""
    top = hello_max_len(flags)
    if not HELLO_SIZE <= len(payload) <= top:
        raise ProtocolError(ERR_MALFORMED, f"HELLO payload of {len(payload)} bytes is outside {HELLO_SIZE}..{top}")
    magic, version, digest, pid, host_len, prog_len = HELLO.unpack_from(payload)
    if magic != HELLO_MAGIC:
        raise ProtocolError(ERR_MALFORMED, f"not a gpuwire client: bad HELLO magic {magic!r}")
    if version != PROTO_VERSION:
        raise ProtocolError(ERR_VERSION,
                            f"client speaks gpuwire protocol version {version}, this server speaks version "
                            f"{PROTO_VERSION}: use matching gpuwire versions on client and server")
    if host_len > NAME_MAX or prog_len > NAME_MAX:
        raise ProtocolError(ERR_MALFORMED, f"HELLO name lengths {host_len}/{prog_len} exceed {NAME_MAX}")
    names_end = HELLO_SIZE + host_len + prog_len
    if names_end > len(payload) or (names_end != len(payload) and not flags & F_HELLO_EXT):
        raise ProtocolError(ERR_MALFORMED,
                            f"HELLO is {len(payload)} bytes but its name lengths say {names_end}"
                            + ("" if names_end > len(payload) else
                               " (extension records need the HELLO_EXT flag in the frame header)"))
    if len(payload) - names_end > HELLO_EXT_MAX:
        raise ProtocolError(ERR_MALFORMED, f"HELLO extension of {len(payload) - names_end} bytes exceeds "
                                           f"{HELLO_EXT_MAX}")
    host = _name(payload[HELLO_SIZE:HELLO_SIZE + host_len], "host")
    prog = _name(payload[HELLO_SIZE + host_len:names_end], "program")
    return Hello(version, digest, pid, host, prog, parse_ext(payload[names_end:]))


# sized records (all but ENV): their exact size and name, from codegen/protocol.txt
_EXT_SIZES = {t: size for t, (_n, _c, _f, size) in EXT_CODECS.items() if size is not None}
_EXT_NAMES = {t: name for t, (name, _c, _f, _s) in EXT_CODECS.items()}
_ENV_VALUE = re.compile(f"[{re.escape(ENV_VALUE_CHARS.decode())}]*")


def parse_env_record(value: bytes) -> tuple[tuple[str, str], ...]:
    """EXT_ENV: NUL-separated NAME=VALUE items. Only ENV_FORWARDED names, each
    once, with plain values (device indices, UUIDs, MIG ids, orders) pass;
    anything else is malformed, so no other variable can reach the worker."""
    out: dict[str, str] = {}
    for item in value.split(b"\0") if value else []:
        try:
            text = item.decode("ascii")
        except UnicodeDecodeError:
            raise ProtocolError(ERR_MALFORMED, "HELLO extension ENV is not ASCII") from None
        name, eq, val = text.partition("=")
        if not eq or name not in ENV_FORWARDED:
            raise ProtocolError(ERR_MALFORMED, f"HELLO extension ENV names {name!r}, expected one of "
                                               f"{', '.join(ENV_FORWARDED)}")
        if name in out:
            raise ProtocolError(ERR_MALFORMED, f"HELLO extension ENV sets {name} twice")
        if len(val) > ENV_VALUE_MAX or not _ENV_VALUE.fullmatch(val):
            raise ProtocolError(ERR_MALFORMED, f"HELLO extension ENV value of {name} is malformed")
        out[name] = val
    return tuple(out.items())


def parse_ext(data: bytes) -> HelloExt:
    """Decode HELLO extension records. Each known type appears at most once with
    its exact size; unknown types are skipped unless EXT_CRITICAL is set."""
    fields: dict[str, object] = {}
    seen: set[int] = set()
    unknown: list[int] = []
    off = 0
    while off < len(data):
        if len(data) - off < EXT_RECORD.size:
            raise ProtocolError(ERR_MALFORMED, f"HELLO extension ends inside a record header at byte {off}")
        typ, n = EXT_RECORD.unpack_from(data, off)
        off += EXT_RECORD.size
        if n > len(data) - off:
            raise ProtocolError(ERR_MALFORMED, f"HELLO extension record type {typ} says {n} bytes, "
                                               f"{len(data) - off} remain")
        value = data[off:off + n]
        off += n
        if typ in seen:
            raise ProtocolError(ERR_MALFORMED, f"HELLO extension record type {typ} appears twice")
        seen.add(typ)
        if typ == EXT_ENV:
            fields["env"] = parse_env_record(value)
            continue
        if typ not in _EXT_SIZES:
            if typ & EXT_CRITICAL:
                raise ProtocolError(ERR_VERSION, f"HELLO asks for extension type 0x{typ:04x}, which this "
                                                 f"server does not know: upgrade the gpuwire server")
            unknown.append(typ)
            continue
        if n != _EXT_SIZES[typ]:
            raise ProtocolError(ERR_MALFORMED, f"HELLO extension {_EXT_NAMES[typ]} is {n} bytes, "
                                               f"expected {_EXT_SIZES[typ]}")
        _name, codec, field, _size = EXT_CODECS[typ]
        if codec == "bool":
            if value[0] > 1:
                raise ProtocolError(ERR_MALFORMED, f"HELLO extension {_EXT_NAMES[typ]} is {value[0]}, "
                                                   f"expected 0 or 1")
            fields[field] = bool(value[0])
        else:
            fields[field] = int.from_bytes(value, "little")
    return HelloExt(unknown=tuple(unknown), **fields) if (fields or unknown) else NO_EXT


def pack_queued(position: int, waiting: int, waited_s: float, text: str) -> bytes:
    """A whole QUEUED frame: where the client stands in the lease queue, and a line to print."""
    msg = text.encode("utf-8", "replace")[:QUEUED_TEXT_MAX].decode("utf-8", "ignore").encode("utf-8")
    waited_ms = min(int(waited_s * 1000), 0xFFFFFFFF)
    return pack_frame(OP_QUEUED, QUEUED.pack(position, waiting, waited_ms) + msg)


def parse_queued(payload: bytes) -> tuple[int, int, float, str]:
    if len(payload) < QUEUED.size:
        raise ProtocolError(ERR_MALFORMED, f"QUEUED payload of {len(payload)} bytes is shorter than {QUEUED.size}")
    pos, waiting, ms = QUEUED.unpack_from(payload)
    return pos, waiting, ms / 1000.0, payload[QUEUED.size:].decode("utf-8", "replace")


def pack_error(code: int, message: str, seq: int = 0) -> bytes:
    """A whole ERROR frame: u32 code, then the UTF-8 message (cut to ERROR_MESSAGE_MAX bytes)."""
    msg = message.encode("utf-8", "replace")[:ERROR_MESSAGE_MAX].decode("utf-8", "ignore").encode("utf-8")
    return pack_frame(OP_ERROR, ERROR_CODE.pack(code) + msg, seq=seq)


def parse_error(payload: bytes) -> tuple[int, str]:
    if len(payload) < ERROR_CODE.size:
        raise ProtocolError(ERR_MALFORMED, f"ERROR payload of {len(payload)} bytes is shorter than its code")
    (code,) = ERROR_CODE.unpack_from(payload)
    return code, payload[ERROR_CODE.size:].decode("utf-8", "replace")


def parse_hello_ok(payload: bytes) -> HelloOk:
    """HELLO_OK, and its LANE_GRANT when flags has OK_LANES."""
    if len(payload) < HELLO_OK_SIZE:
        raise ProtocolError(ERR_MALFORMED, f"HELLO_OK payload is {len(payload)} bytes, expected {HELLO_OK_SIZE}")
    version, drv, count, flags, desc = HELLO_OK.unpack_from(payload)
    want = HELLO_OK_SIZE + (LANE_GRANT.size if flags & OK_LANES else 0)
    devices = []
    if flags & OK_DEVICES:  # device_count DEVICE_INFO records, then each one's attribute pairs
        if not 0 < count <= HELLO_DEVICES_MAX or len(payload) < want + count * DEVICE_INFO_SIZE:
            raise ProtocolError(ERR_MALFORMED, f"HELLO_OK payload is {len(payload)} bytes, too short for "
                                               f"{count} device record(s)")
        devices = [DEVICE_INFO.unpack_from(payload, want + i * DEVICE_INFO_SIZE) for i in range(count)]
        want += count * DEVICE_INFO_SIZE + sum(d[7] * 8 for d in devices)
    if len(payload) != want:
        raise ProtocolError(ERR_MALFORMED, f"HELLO_OK payload is {len(payload)} bytes, expected {want}")
    grant = LaneGrant(*LANE_GRANT.unpack_from(payload, HELLO_OK_SIZE)) if flags & OK_LANES else None
    return HelloOk(version, drv, count, flags, desc.split(b"\0", 1)[0].decode("utf-8", "replace"), grant,
                   tuple(devices))


# --- socket helpers -------------------------------------------------------


class Truncated(ProtocolError):
    """The peer closed the connection in the middle of a frame (or before one)."""

    def __init__(self, got: int, wanted: int):
        super().__init__(ERR_MALFORMED, f"connection closed after {got} of {wanted} bytes")
        self.got = got
        self.wanted = wanted


def recv_exact(sock: socket.socket, n: int, deadline: float | None = None) -> bytes:
    """Read exactly n bytes. Raises Truncated on EOF, socket.timeout past the deadline
    (a time.monotonic() value covering the whole read, not each recv)."""
    buf = bytearray()
    while len(buf) < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout(f"timed out after {len(buf)} of {n} bytes")
            sock.settimeout(left)
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise Truncated(len(buf), n)
        buf += chunk
    return bytes(buf)


def recv_frame(sock: socket.socket, deadline: float | None = None,
               max_len: int = MAX_PAYLOAD) -> tuple[Header, bytes]:
    hdr = unpack_header(recv_exact(sock, HEADER_SIZE, deadline))
    if hdr.length > max_len:
        raise ProtocolError(ERR_MALFORMED, f"frame payload of {hdr.length} bytes exceeds {max_len}")
    return hdr, recv_exact(sock, hdr.length, deadline)
