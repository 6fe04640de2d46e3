"""CAS_REFS / CAS_DATA from a hostile client (raw frames after the handshake):
every bad count, length, target, op, codec or offset ends that session with
ERROR malformed and a log line; the server and other sessions carry on. And
the miss list names exactly the chunks the cache lacks."""

import hashlib
import struct
import time

import pytest

from conftest import ROOT
from gpuwire import protocol
from test_server import assert_malformed_ends_session, good_session, unique_pid

SYMBOLS = sorted({s.strip() for s in (ROOT / "codegen" / "driver_symbols.txt").read_text().split() if s.strip()})


def op_id(name: str) -> int:
    """A driver call's id: OP_FIRST_CALL + its index in the sorted symbol list (docs/protocol.md)."""
    return protocol.OP_FIRST_CALL + SYMBOLS.index(name)


def frame(op: int, payload: bytes, flags: int = 0, seq: int = 1) -> bytes:
    return protocol.pack_header(op, len(payload), flags, 1, seq) + payload


def refs(target: bytes, chunks: list[tuple[int, bytes]], n: int | None = None) -> bytes:
    body = struct.pack("<I", len(chunks) if n is None else n)
    for length, h in chunks:
        body += struct.pack("<I", length) + h
    return target + body


def stage(total: int) -> bytes:
    return struct.pack("<IQ", protocol.CAS_TARGET_STAGE, total)


def copy(op: int, dst: int = 0x1000, stream: int = 0) -> bytes:
    return struct.pack("<IIQQ", protocol.CAS_TARGET_COPY, op, dst, stream)


H = hashlib.sha256(b"x").digest()
BAD = [
    ("no references", frame(protocol.OP_CAS_REFS, refs(stage(100), [])), "chunk references"),
    ("too many references", frame(protocol.OP_CAS_REFS, refs(stage(100), [(1, H)], n=protocol.CAS_MAX_REFS + 1)),
     "chunk references"),
    ("fewer than announced", frame(protocol.OP_CAS_REFS, refs(stage(200), [(100, H)], n=2)), ""),
    ("chunk of 0 bytes", frame(protocol.OP_CAS_REFS, refs(stage(0), [(0, H)])), "chunk 0 of 0 bytes"),
    ("chunk over 4 MiB", frame(protocol.OP_CAS_REFS, refs(stage(5 << 20), [(5 << 20, H)])), "chunk 0 of"),
    ("sizes do not add up", frame(protocol.OP_CAS_REFS, refs(stage(300), [(100, H), (100, H)])), "for an image"),
    ("unknown target", frame(protocol.OP_CAS_REFS, struct.pack("<I", 9) + refs(b"", [(1, H)])), "unknown target"),
    ("not a copy op", frame(protocol.OP_CAS_REFS, refs(copy(op_id("cuInit")), [(1, H)])), "not a host-to-device"),
    ("unknown codec", frame(protocol.OP_CAS_DATA, stage(0) + struct.pack("<II", 7, 4) + b"abcd"), "codec 7"),
    ("raw length differs", frame(protocol.OP_CAS_DATA, stage(0) + struct.pack("<II", 0, 5) + b"abcd"), "codec 0"),
    ("zero bytes", frame(protocol.OP_CAS_DATA, stage(0) + struct.pack("<II", 0, 0)), "0 bytes raw"),
    ("outside the image", frame(protocol.OP_CAS_REFS, refs(stage(100), [(100, H)]), seq=1)
     + frame(protocol.OP_CAS_DATA, stage(90) + struct.pack("<II", 0, 20) + bytes(20), flags=protocol.F_NOREPLY, seq=2),
     "outside the staged image"),
]


@pytest.mark.parametrize("what,data,reason", BAD, ids=[b[0] for b in BAD])
def test_malformed_cache_frames_end_the_session(server, what, data, reason):
    def refs_answered(sock):  # in "outside the image" the REFS is fine and answered first
        hdr, payload = protocol.recv_frame(sock, time.monotonic() + 15)
        assert hdr.op == protocol.OP_REPLY and struct.unpack_from("<iI", payload) == (0, 1)
    assert_malformed_ends_session(server, data, reason, refs_answered if what == "outside the image" else None)


def test_refs_name_exactly_the_missing_chunks(server):
    """A staged image of three chunks, one of which the cache holds: the reply names the other two."""
    sock, sid = good_session(server, unique_pid())
    with sock:
        present = b"gpuwire cache wire test chunk %d" % unique_pid()
        # store it: an image of one chunk, missing, then its bytes
        sock.sendall(frame(protocol.OP_CAS_REFS, refs(stage(len(present)), [(len(present), hashlib.sha256(present).digest())])))
        hdr, payload = protocol.recv_frame(sock, time.monotonic() + 15)
        assert struct.unpack_from("<iII", payload) == (0, 1, 0)
        sock.sendall(frame(protocol.OP_CAS_DATA, stage(0) + struct.pack("<II", 0, len(present)) + present,
                           flags=protocol.F_NOREPLY, seq=2))
        chunks = [(7, hashlib.sha256(b"absent1").digest()), (len(present), hashlib.sha256(present).digest()),
                  (7, hashlib.sha256(b"absent2").digest())]
        sock.sendall(frame(protocol.OP_CAS_REFS, refs(stage(14 + len(present)), chunks), seq=3))
        hdr, payload = protocol.recv_frame(sock, time.monotonic() + 15)
        assert hdr.op == protocol.OP_REPLY and hdr.seq == 3
        assert struct.unpack_from("<iIII", payload) == (0, 2, 0, 2), payload
