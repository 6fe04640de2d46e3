"""A session's host memory on the server is bounded (issue 18, finding 1).

The worker queues each client thread's requests, at most 64 MiB per thread
tag, and a session may use 256 tags: without a bound across them, a client
that stopped reading its replies (so nothing queued could finish) grew one
worker by 64 MiB per tag. Now a session's queued and running requests hold at
most 256 MiB in all (the reader waits for room: back-pressure), a client that
reads nothing while a reply waits is cut off after --client-stall-timeout,
and staged module images are bounded per session too. Raw clients speak the
wire here, against the stand-in."""

from __future__ import annotations

import os
import re
import socket
import struct
import threading
import time
from pathlib import Path

import pytest

from conftest import ROOT, client_api_digest, start_server
from gpuwire import protocol
from test_server import unique_pid

OPS = Path(ROOT / "native" / "generated" / "gw_ops.h").read_text()


def op_id(name: str) -> int:
    return int(re.search(rf"#define GW_OP_{name} (\d+)", OPS).group(1))


INIT, RETAIN, SET_CURRENT = op_id("cuInit"), op_id("cuDevicePrimaryCtxRetain"), op_id("cuCtxSetCurrent")
ALLOC, HTOD, DTOH = op_id("cuMemAlloc_v2"), op_id("cuMemcpyHtoD_v2"), op_id("cuMemcpyDtoH_v2")
SYNC, LOAD = op_id("cuCtxSynchronize"), op_id("cuModuleLoadData")
OUT_OF_MEMORY = 2
CHUNK = protocol.COPY_CHUNK
STALL_S = 4            # the test server's --client-stall-timeout
RSS_BOUND_MIB = 600    # 256 MiB of backlog plus the worker's own, with room to spare
BIG = protocol.MAX_PAYLOAD - 16  # a host-to-device frame of the largest payload


def rss_mib(pid: int) -> float | None:
    """The process's resident memory, or None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class PeakRSS:
    """Polls a process's resident memory until it ends (or stop())."""

    def __init__(self, pid: int):
        self.pid, self.peak, self.gone = pid, 0.0, False
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.is_set():
            r = rss_mib(self.pid)
            if r is None:
                self.gone = True
                return
            self.peak = max(self.peak, r)
            time.sleep(0.02)

    def stop(self) -> float:
        self._stop.set()
        self._t.join(5)
        return self.peak


class Raw:
    """A session spoken on the wire by hand."""

    def __init__(self, server, rcvbuf: int | None = None):
        self.sock = socket.socket()
        if rcvbuf:  # before connecting, so the window stays small
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(30)
        self.sock.connect((server.host, server.port))
        pid = unique_pid()
        self.sock.sendall(protocol.pack_hello(pid, "testhost", "pytest-backlog", client_api_digest()))
        hdr, payload = protocol.recv_frame(self.sock, time.monotonic() + 30)
        assert hdr.op == protocol.OP_HELLO_OK, hdr
        self.ok = protocol.parse_hello_ok(payload)
        self.sid = server.session_of_pid(pid)
        self.worker = int(server.wait_for_log(r"session start.* worker_pid=(\d+)", session=self.sid).group(1))
        self.seq = 0

    def send(self, op: int, payload: bytes = b"", tid: int = 1, flags: int = 0) -> int:
        self.seq += 1
        self.sock.sendall(protocol.pack_header(op, len(payload), flags, tid, self.seq) + payload)
        return self.seq

    def reply(self, seq: int) -> tuple[int, bytes]:
        hdr, body = protocol.recv_frame(self.sock, time.monotonic() + 30)
        assert hdr.op == protocol.OP_REPLY and hdr.seq == seq, (hdr, body[:200])
        return struct.unpack_from("<i", body)[0], body[4:]

    def call(self, op: int, payload: bytes = b"", tid: int = 1, flags: int = 0) -> tuple[int, bytes]:
        return self.reply(self.send(op, payload, tid, flags))

    def setup(self, alloc: int) -> tuple[int, int]:
        """A current context on thread tag 1 and `alloc` bytes of device memory: (context id, address)."""
        assert self.call(INIT, struct.pack("<Q", 0))[0] == 0
        rc, out = self.call(RETAIN, struct.pack("<IQ", 1, 0))
        assert rc == 0, rc
        ctx = struct.unpack("<Q", out)[0]
        assert self.call(SET_CURRENT, struct.pack("<Q", ctx))[0] == 0
        rc, out = self.call(ALLOC, struct.pack("<IQ", 1, alloc))
        assert rc == 0, rc
        return ctx, struct.unpack("<Q", out)[0]

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked sending on it
        except OSError:
            pass
        self.sock.close()


def honest_round_trip(server) -> None:
    """Another client's copy there and back comes back intact."""
    s = Raw(server)
    try:
        _, dptr = s.setup(1 << 20)
        data = os.urandom(1 << 20)
        assert s.call(HTOD, struct.pack("<QQ", dptr, 0) + data)[0] == 0
        rc, out = s.call(DTOH, struct.pack("<QQQ", dptr, len(data), 0))
        assert rc == 0 and out == data
    finally:
        s.close()


@pytest.fixture(scope="module")
def stall_server(tmp_path_factory):
    srv = start_server(tmp_path_factory.mktemp("backlog") / "server.log",
                       extra_args=("--client-stall-timeout", str(STALL_S)))
    yield srv
    srv.stop()


def test_client_that_never_reads_is_bounded_then_cut_off(stall_server):
    srv = stall_server
    attacker = Raw(srv, rcvbuf=64 << 10)
    rss = PeakRSS(attacker.worker)
    try:
        _, dptr = attacker.setup(CHUNK)
        # device-to-host copies whose replies it never reads: once the socket's
        # buffers are full, the worker's writes block and no later job can finish
        for _ in range(8):
            attacker.send(DTOH, struct.pack("<QQQ", dptr, CHUNK, 0))
        started = time.monotonic()
        big = struct.pack("<QQ", dptr, 0) + bytes(BIG - 16)
        sent = [0]

        def flood():  # 16 tags x 5 frames x 16 MiB, each wanting a reply
            try:
                for _ in range(5):
                    for tid in range(2, 18):
                        attacker.send(HTOD, big, tid=tid)
                        sent[0] += len(big)
            except OSError:
                pass  # the worker ended the session

        t = threading.Thread(target=flood, daemon=True)
        t.start()
        time.sleep(1.0)
        honest_round_trip(srv)  # the server and other sessions are not held up meanwhile
        srv.wait_for_log(rf"closing session: the client read nothing for {STALL_S:g} s while a frame waited "
                         rf"to be sent \(stall timeout\)", session=attacker.sid, timeout=STALL_S + 20)
        ended = time.monotonic() - started
        srv.wait_for_log(r"session end", session=attacker.sid, timeout=10)
        t.join(10)
        deadline = time.monotonic() + 5
        while not rss.gone and time.monotonic() < deadline:
            time.sleep(0.05)
        assert rss.gone, "the worker still runs after its session ended"
        peak = rss.stop()
        print(f"worker peak {peak:.0f} MiB; {sent[0] >> 20} MiB sent; ended {ended:.1f} s after the stall began")
        assert peak < RSS_BOUND_MIB, f"the worker grew to {peak:.0f} MiB (bound {RSS_BOUND_MIB})"
        assert ended < STALL_S + 15, f"the session ended {ended:.1f} s after the client stopped reading"
    finally:
        rss.stop()
        attacker.close()
    honest_round_trip(srv)
    assert srv.alive()


def test_slow_reader_gets_back_pressure_not_cut_off(stall_server):
    """A client that pauses reading (shorter than the stall timeout) while it
    queues far more than the session's bound on many tags is made to wait, and
    then everything completes in order."""
    srv = stall_server
    s = Raw(srv, rcvbuf=64 << 10)
    rss = PeakRSS(s.worker)
    try:
        ctx, dptr = s.setup(2 * CHUNK)  # copies back read the first half, the flood writes the second
        pattern = os.urandom(CHUNK)
        assert s.call(HTOD, struct.pack("<QQ", dptr, 0) + pattern)[0] == 0
        waits = [s.send(DTOH, struct.pack("<QQQ", dptr, CHUNK, 0)) for _ in range(6)]
        tags = range(2, 34)
        for tid in tags:  # each tag's thread needs the context too
            waits.append(s.send(SET_CURRENT, struct.pack("<Q", ctx), tid=tid))
        big = struct.pack("<QQ", dptr + CHUNK, 0) + bytes(CHUNK)
        done = threading.Event()
        errors = []

        def flood():  # 32 tags x 6 x 4 MiB = 768 MiB, each frame wanting a reply
            try:
                for _ in range(6):
                    for tid in tags:
                        waits.append(s.send(HTOD, big, tid=tid))
                waits.append(s.send(SYNC, b"", tid=1, flags=protocol.F_COLLECT))
            except OSError as e:
                errors.append(e)
            done.set()

        t = threading.Thread(target=flood, daemon=True)
        t.start()
        time.sleep(STALL_S / 2)  # not reading for a while: the backlog hits the session's bound
        got = {}
        deadline = time.monotonic() + 120
        while (not done.is_set() or len(got) < len(waits)) and time.monotonic() < deadline:
            hdr, body = protocol.recv_frame(s.sock, time.monotonic() + 30)
            assert hdr.op == protocol.OP_REPLY, (hdr, body[:300])
            got[hdr.seq] = body
        t.join(10)
        assert not errors, errors
        assert sorted(got) == sorted(waits)
        assert all(struct.unpack_from("<i", got[q])[0] == 0 for q in waits)
        assert all(got[q][4:] == pattern for q in waits[:6])
        peak = rss.stop()
        print(f"worker peak {peak:.0f} MiB for {len(waits)} requests")
        assert peak < RSS_BOUND_MIB, f"the worker grew to {peak:.0f} MiB (bound {RSS_BOUND_MIB})"
        assert not [ln for ln in srv.log_lines(s.sid) if "closing session" in ln]
        rc, out = s.call(DTOH, struct.pack("<QQQ", dptr + CHUNK, 4096, 0))
        assert rc == 0 and out == bytes(4096)
    finally:
        rss.stop()
        s.close()


def test_staged_images_are_bounded_per_session(stall_server):
    """Staging blobs (module images on their way) are kept per thread tag until
    loaded: all of a session's together are held to 4 GiB. Past that a blob is
    refused with out-of-memory, its load fails the same way, and the session
    goes on."""
    srv = stall_server
    s = Raw(srv)
    try:
        gib = 1 << 30
        piece = os.urandom(4096)
        for tid in range(1, 5):  # 4 x 1 GiB announced (only the first piece sent: memory stays small)
            assert s.call(protocol.OP_STAGE, struct.pack("<QQ", 0, gib) + piece, tid=tid)[0] == 0
        assert s.call(protocol.OP_STAGE, struct.pack("<QQ", 0, gib) + piece, tid=5)[0] == OUT_OF_MEMORY
        assert s.call(protocol.OP_STAGE, struct.pack("<QQ", 4096, gib) + piece, tid=5)[0] == OUT_OF_MEMORY
        load = struct.pack("<QQII", (1 << 62) | 0x1000, gib, 0, 0)
        assert s.call(INIT, struct.pack("<Q", 0), tid=5)[0] == 0
        assert s.call(LOAD, load, tid=5)[0] == OUT_OF_MEMORY
        # a tag's new blob replaces its old one: room again for a smaller one
        assert s.call(protocol.OP_STAGE, struct.pack("<QQ", 0, 4096) + piece, tid=4)[0] == 0
        assert s.call(protocol.OP_STAGE, struct.pack("<QQ", 0, gib // 2) + piece, tid=5)[0] == 0
        assert s.call(INIT, struct.pack("<Q", 0), tid=6)[0] == 0  # the session goes on
        assert rss_mib(s.worker) < RSS_BOUND_MIB
    finally:
        s.close()


def test_lane_the_client_stops_reading_is_closed(stall_server):
    """Device-to-host pieces on a lane the client never reads: the lane is
    closed after the stall timeout (its pieces fail), the session goes on."""
    srv = stall_server
    s = Raw(srv)
    lane = socket.socket()
    try:
        grant = s.ok.lanes
        assert grant is not None, s.ok
        lane.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
        lane.settimeout(15)
        lane.connect((srv.host, srv.port))
        lane.sendall(protocol.pack_lane_hello(grant.session, 0, grant.token))
        hdr, _ = protocol.recv_frame(lane, time.monotonic() + 15)
        assert (hdr.op, hdr.length, hdr.seq) == (protocol.OP_LANE, 0, 0), hdr
        _, dptr = s.setup(CHUNK)
        pieces = [s.send(DTOH, struct.pack("<QQQII", dptr, CHUNK, 0, 0, 100 + i), flags=protocol.F_LANE)
                  for i in range(8)]
        results = [s.reply(q)[0] for q in pieces]
        assert any(r != 0 for r in results), results
        srv.wait_for_log(rf"lane 0: closing it: the client read nothing on it for {STALL_S:g} s \(stall timeout\)",
                         session=s.sid, timeout=5)
        assert s.call(INIT, struct.pack("<Q", 0), tid=2)[0] == 0  # the session goes on
        assert not [ln for ln in srv.log_lines(s.sid) if "closing session" in ln]
    finally:
        lane.close()
        s.close()
