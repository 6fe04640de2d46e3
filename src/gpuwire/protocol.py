"""gpuwire wire format, Python side: the frames the server itself reads and writes.

native/common/wire.h is the C form and docs/protocol.md the specification; the
constants and struct layouts here mirror wire.h (tests/test_protocol.py checks
them against the header). Everything on the wire is little-endian.
"""

from __future__ import annotations

import socket
import struct
import time
from typing import NamedTuple

PROTO_VERSION = 1
HELLO_MAGIC = b"GPUWIRE\0"
MAX_PAYLOAD = 16 * 1024 * 1024
COPY_CHUNK = 4 * 1024 * 1024

# Control ops (driver calls use generated ids >= OP_FIRST_CALL).
OP_HELLO = 1
OP_HELLO_OK = 2
OP_ERROR = 3
OP_REPLY = 4
OP_BYE = 5
OP_FUNC_LAYOUT = 6
OP_STAGE = 7
OP_FIRST_CALL = 256

F_NOREPLY = 1 << 0
F_COLLECT = 1 << 1

# OP_ERROR codes.
ERR_VERSION = 1
ERR_MALFORMED = 2
ERR_DRIVER = 3
ERR_REFUSED = 4
ERROR_NAMES = {
    ERR_VERSION: "version",
    ERR_MALFORMED: "malformed",
    ERR_DRIVER: "driver",
    ERR_REFUSED: "refused",
}

# struct gw_hdr {u32 len; u16 op; u16 flags; u32 tid; u32 seq;}
HEADER = struct.Struct("<IHHII")
# struct gw_hello {char magic[8]; u32 proto_version; u32 api_digest; u32 pid; u16 host_len; u16 prog_len;}
HELLO = struct.Struct("<8sIIIHH")
# struct gw_hello_ok {u32 proto_version; i32 driver_version; u32 device_count; u32 flags; char driver_desc[64];}
HELLO_OK = struct.Struct("<IiII64s")
ERROR_CODE = struct.Struct("<I")

HEADER_SIZE = 16
HELLO_SIZE = 24
HELLO_OK_SIZE = 80
NAME_MAX = 255
HELLO_MAX_LEN = HELLO_SIZE + NAME_MAX + NAME_MAX
ERROR_MESSAGE_MAX = 1024  # what this side sends; a longer message is cut

assert HEADER.size == HEADER_SIZE
assert HELLO.size == HELLO_SIZE
assert HELLO_OK.size == HELLO_OK_SIZE
assert len(HELLO_MAGIC) == 8


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


class Hello(NamedTuple):
    proto_version: int
    api_digest: int
    pid: int
    host: str
    prog: str


class HelloOk(NamedTuple):
    proto_version: int
    driver_version: int
    device_count: int
    flags: int
    driver_desc: str


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


def pack_hello(pid: int, host: str | bytes, prog: str | bytes, api_digest: int, **kw) -> bytes:
    """A whole HELLO frame (header + payload), as a client sends it."""
    return pack_frame(OP_HELLO, pack_hello_payload(pid, host, prog, api_digest, **kw))


def check_hello_header(hdr: Header) -> None:
    """Validate the header of the first frame a client sends."""
    if hdr.op != OP_HELLO:
        raise ProtocolError(ERR_MALFORMED, f"first frame must be HELLO (op {OP_HELLO}), got op {hdr.op}")
    if not HELLO_SIZE <= hdr.length <= HELLO_MAX_LEN:
        raise ProtocolError(ERR_MALFORMED,
                            f"HELLO payload of {hdr.length} bytes is outside {HELLO_SIZE}..{HELLO_MAX_LEN}")


def _name(raw: bytes, what: str) -> str:
    if b"\0" in raw:
        raise ProtocolError(ERR_MALFORMED, f"HELLO {what} name contains a NUL byte")
    return raw.decode("utf-8", "replace")


def parse_hello(payload: bytes) -> Hello:
    """Validate and decode a HELLO payload. Raises ProtocolError with the code to answer."""
    if not HELLO_SIZE <= len(payload) <= HELLO_MAX_LEN:
        raise ProtocolError(ERR_MALFORMED,
                            f"HELLO payload of {len(payload)} bytes is outside {HELLO_SIZE}..{HELLO_MAX_LEN}")
    magic, version, digest, pid, host_len, prog_len = HELLO.unpack_from(payload)
    if magic != HELLO_MAGIC:
        raise ProtocolError(ERR_MALFORMED, f"not a gpuwire client: bad HELLO magic {magic!r}")
    if version != PROTO_VERSION:
        raise ProtocolError(ERR_VERSION,
                            f"client speaks gpuwire protocol version {version}, this server speaks version "
                            f"{PROTO_VERSION}: use matching gpuwire versions on client and server")
    if host_len > NAME_MAX or prog_len > NAME_MAX:
        raise ProtocolError(ERR_MALFORMED, f"HELLO name lengths {host_len}/{prog_len} exceed {NAME_MAX}")
    if HELLO_SIZE + host_len + prog_len != len(payload):
        raise ProtocolError(ERR_MALFORMED,
                            f"HELLO is {len(payload)} bytes but its name lengths say "
                            f"{HELLO_SIZE + host_len + prog_len}")
    host = _name(payload[HELLO_SIZE:HELLO_SIZE + host_len], "host")
    prog = _name(payload[HELLO_SIZE + host_len:], "program")
    return Hello(version, digest, pid, host, prog)


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
    if len(payload) != HELLO_OK_SIZE:
        raise ProtocolError(ERR_MALFORMED, f"HELLO_OK payload is {len(payload)} bytes, expected {HELLO_OK_SIZE}")
    version, drv, count, flags, desc = HELLO_OK.unpack(payload)
    return HelloOk(version, drv, count, flags, desc.split(b"\0", 1)[0].decode("utf-8", "replace"))


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
