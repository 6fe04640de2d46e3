"""Copy lanes (docs/protocol.md "Lanes"): large host-to-device copies whose bytes
travel on extra connections, against the stand-in.

A real program's copies arrive intact and in order on lanes (and without them);
the server grants none when told so; and hostile lane traffic (a wrong token,
another session, a frame naming a lane never opened, a malformed or mismatched
data frame) is refused, ending only that session."""

import json
import re
import socket
import struct
import time
from pathlib import Path

import pytest

from conftest import ROOT, client_api_digest, explain, gw_run, start_server
from gpuwire import protocol
from test_server import (assert_malformed_ends_session, connect, expect_error_frame, good_session,
                         read_until_closed, unique_pid)

PROGRAM = ROOT / "build" / "programs" / "lane_copies"
OPS = Path(ROOT / "native" / "generated" / "gw_ops.h").read_text()


def op_id(name: str) -> int:
    return int(re.search(rf"#define GW_OP_{name} (\d+)", OPS).group(1))


HTOD = op_id("cuMemcpyHtoD_v2")
DTOH = op_id("cuMemcpyDtoH_v2")


def lane_copy_frame(lane: int, n: int, dst: int = 0x1000, op: int = HTOD, seq: int = 1) -> bytes:
    payload = struct.pack("<QQII", dst, 0, lane, n)
    return protocol.pack_header(op, len(payload), protocol.F_LANE | protocol.F_NOREPLY, 1, seq) + payload


def lane_data_frame(seq: int, data: bytes) -> bytes:
    return protocol.pack_header(protocol.OP_LANE, len(data), 0, 0, seq) + data


def granted_session(server) -> tuple[socket.socket, int, protocol.LaneGrant]:
    """A session past HELLO_OK, with the lanes its worker granted."""
    pid = unique_pid()
    sock = connect(server)
    sock.sendall(protocol.pack_hello(pid, "testhost", "pytest-lanes", client_api_digest()))
    hdr, payload = protocol.recv_frame(sock, time.monotonic() + 30)
    assert hdr.op == protocol.OP_HELLO_OK, hdr
    ok = protocol.parse_hello_ok(payload)
    assert ok.flags & protocol.OK_LANES and ok.lanes is not None, ok
    return sock, server.session_of_pid(pid), ok.lanes


def open_lane(server, grant: protocol.LaneGrant, lane: int, token: bytes | None = None,
              session: int | None = None) -> socket.socket:
    sock = connect(server)
    sock.sendall(protocol.pack_lane_hello(grant.session if session is None else session, lane,
                                          grant.token if token is None else token))
    return sock


def accepted(sock: socket.socket, lane: int) -> None:
    hdr, payload = protocol.recv_frame(sock, time.monotonic() + 15)
    assert (hdr.op, hdr.length, hdr.seq) == (protocol.OP_LANE, 0, lane), (hdr, payload[:200])


def stats_of(path: Path) -> dict:
    return json.loads(path.read_text())


# --- a real program ---------------------------------------------------------


@pytest.fixture(scope="module")
def program():
    if not PROGRAM.exists():
        pytest.skip("build/programs/lane_copies is not built (make -C tests/programs)")
    return PROGRAM


@pytest.mark.parametrize("lanes", ["default", "1", "0"])
def test_large_copies_arrive_intact_and_in_order(program, server, tmp_path, lanes):
    stats = tmp_path / "stats.json"
    env = {"GPUWIRE_CACHE": "0"}  # the plain copy path (the session server has a content cache)
    if lanes != "default":
        env["GPUWIRE_LANES"] = lanes
    result = gw_run([str(program), "9"], server.address, stats=stats, env=env)
    assert result.returncode == 0 and result.stdout.strip().endswith("PASS lane_copies"), explain(result, server)
    s = stats_of(stats)
    want = {"default": 3, "1": 1, "0": 0}[lanes]
    assert s["lanes"] == want, s
    # pageable + pinned copies of 9 MiB + 4097 bytes, then 3 threads x 3 rounds of their own
    # sizes, each way (every copy to the device is read back)
    size = (9 << 20) + 4097
    copied = 2 * size + sum(3 * (size + 777 * (t + 1)) for t in range(3))
    assert s["lane_bytes"] == (2 * copied if want else 0), s
    # the pieces spread over every lane open (both ways), not all onto one
    assert len(s["lane_bytes_by_lane"]) == want and sum(s["lane_bytes_by_lane"]) == s["lane_bytes"], s
    assert all(b >= copied // (2 * want) for b in s["lane_bytes_by_lane"]), s
    assert s["bytes_to_server"] > copied, s
    # the server's account of the session counts the bytes its lanes carried
    starts = [ln for ln in server.log_lines() if "prog=lane_copies" in ln and "session start" in ln]
    sid = re.search(r" session=(\d+)( |$)", starts[-1]).group(1)
    end = server.wait_for_log(r"session end", session=sid).string
    got_in, got_out = (int(re.search(rf" {k}=(\d+)", end).group(1)) for k in ("bytes_in", "bytes_out"))
    assert got_in > copied and got_out > copied, end


def test_a_copy_of_a_few_chunks_loads_every_lane_alike(program, server, tmp_path):
    """A copy ends when its busiest lane does: 15 MiB (four chunks) over three
    lanes went as 8, 4 and 4 MiB; it now goes in six equal pieces, two a lane,
    so each lane carries the same share of every copy, both ways."""
    stats = tmp_path / "stats.json"
    result = gw_run([str(program), "15"], server.address, stats=stats, env={"GPUWIRE_CACHE": "0"})
    assert result.returncode == 0 and result.stdout.strip().endswith("PASS lane_copies"), explain(result, server)
    s = stats_of(stats)
    by = s["lane_bytes_by_lane"]
    assert s["lanes"] == 3 and len(by) == 3, s
    assert max(by) - min(by) <= 0.01 * max(by), by


def test_medium_copies_take_the_lanes_once_open(program, server, tmp_path):
    """Copies of 1 to 8 MiB (llama.cpp's 3.2 MB prompt mask) go on the lanes
    once they are open; the first such copy only starts their opening in the
    background and goes on the session's connection, so no copy of that size
    waits for the opening."""
    stats = tmp_path / "stats.json"
    result = gw_run([str(program), "7"], server.address, stats=stats, env={"GPUWIRE_CACHE": "0"})
    assert result.returncode == 0 and result.stdout.strip().endswith("PASS lane_copies"), explain(result, server)
    s = stats_of(stats)
    size = (7 << 20) + 4097
    copied = 2 * size + sum(3 * (size + 777 * (t + 1)) for t in range(3))
    assert s["lanes"] == 3, s
    assert 0 < s["lane_bytes"] < 2 * copied, s  # the first copy went on the session's connection


@pytest.mark.parametrize("kind", ["pinned", "none"])
def test_page_locked_memory_is_ready_before_the_first_copy(program, server, tmp_path, kind):
    """The driver's pinning leaves page-locked memory resident and a copy from
    it starts at once: gpuwire's populates its pages at allocation and
    registration, and a page-locked allocation big enough for a lane opens the
    lanes in the background, not inside the first copy (simpleMultiCopy times
    its first 16 MiB copy with events). Device memory alone opens none."""
    stats = tmp_path / "stats.json"
    result = gw_run([str(program), "ready", kind], server.address, stats=stats)
    assert result.returncode == 0 and result.stdout.strip().endswith("PASS lane_copies"), explain(result, server)
    s = stats_of(stats)
    assert s["lanes"] == (3 if kind == "pinned" else 0), s
    assert s["lane_bytes"] == 0, s


@pytest.mark.parametrize("pin", ["default", "0"])
def test_lane_pieces_land_from_page_locked_buffers(program, tmp_path, pin):
    """The worker reads the lanes' host-to-device pieces into buffers of its
    own, faulted in from the first piece on and page-locked between jobs
    (the first pieces land before that: ordinary memory, as before), each
    fenced behind its copy; every byte still arrives. GPUWIRE_PIN_CHUNKS=0
    on the server: no such buffers."""
    env = {} if pin == "default" else {"GPUWIRE_PIN_CHUNKS": "0"}
    srv = start_server(tmp_path / "server.log", env=env)
    try:
        result = gw_run([str(program), "9"], srv.address, env={"GPUWIRE_CACHE": "0"})
        assert result.returncode == 0 and result.stdout.strip().endswith("PASS lane_copies"), explain(result, srv)
        m = srv.wait_for_log(r"host-to-device pieces on lanes: (\d+) into page-locked buffers, (\d+) into ordinary")
        pinned, plain = int(m.group(1)), int(m.group(2))
    finally:
        srv.stop()
    # 2 + 9 copies of 9 MiB and a bit: three pieces each
    assert pinned + plain == 33, (pinned, plain)
    if pin == "default":
        assert pinned >= 20 and plain >= 1, (pinned, plain)
    else:
        assert pinned == 0, (pinned, plain)


def test_server_without_lanes_grants_none(tmp_path, program):
    srv = start_server(tmp_path / "server.log", extra_args=("--lanes", "0"))
    try:
        pid = unique_pid()
        with connect(srv) as sock:
            sock.sendall(protocol.pack_hello(pid, "h", "p", client_api_digest()))
            hdr, payload = protocol.recv_frame(sock, time.monotonic() + 30)
            ok = protocol.parse_hello_ok(payload)
            assert not ok.flags & protocol.OK_LANES and ok.lanes is None, ok
        stats = tmp_path / "stats.json"
        result = gw_run([str(program), "9"], srv.address, stats=stats, env={"GPUWIRE_CACHE": "0"})
        assert result.returncode == 0 and "PASS lane_copies" in result.stdout, explain(result, srv)
        assert stats_of(stats)["lanes"] == 0
    finally:
        srv.stop()


# --- hostile lane traffic -----------------------------------------------------


def test_lane_for_no_such_session_is_refused(server):
    grant = protocol.LaneGrant(session=999_999, lanes=3, token=bytes(16))
    with open_lane(server, grant, 0) as sock:
        code, msg = expect_error_frame(sock)
    assert code == protocol.ERR_REFUSED and "no session 999999" in msg, msg
    assert server.alive()


def test_malformed_lane_hello_is_refused(server):
    with connect(server) as sock:
        sock.sendall(protocol.pack_frame(protocol.OP_LANE, b"NOTGPUWR" + bytes(24)))
        code, msg = expect_error_frame(sock)
    assert code == protocol.ERR_MALFORMED and "magic" in msg, msg
    with connect(server) as sock:  # of another length: refused on its header alone
        sock.sendall(protocol.pack_header(protocol.OP_LANE, 1 << 20))
        code, msg = expect_error_frame(sock)
    assert code == protocol.ERR_MALFORMED and "LANE hello of 1048576 bytes" in msg, msg


def test_wrong_token_is_closed_and_the_session_lives_on(server):
    sock, sid, grant = granted_session(server)
    with sock:
        bad = bytes(b ^ 0xFF for b in grant.token)
        with open_lane(server, grant, 0, token=bad) as lane:
            assert read_until_closed(lane) == b""  # no acceptance: closed by the worker
        server.wait_for_log(r"refused a lane connection: wrong token", session=sid)
        # the session still has its lane 0 to open, and it works
        with open_lane(server, grant, 0) as lane:
            accepted(lane, 0)
        with open_lane(server, grant, 0) as again:
            assert read_until_closed(again) == b""
        server.wait_for_log(r"refused a lane connection: lane already open", session=sid)
        with open_lane(server, grant, grant.lanes) as past:
            assert read_until_closed(past) == b""
        server.wait_for_log(r"refused a lane connection: lane number out of range", session=sid)
    assert server.alive()


def test_status_shows_a_sessions_lanes(server):
    from test_session_stats import _status
    sock, sid, grant = granted_session(server)
    with sock, open_lane(server, grant, 0) as l0, open_lane(server, grant, 2) as l2:
        accepted(l0, 0)
        accepted(l2, 2)
        snap = _status(server)
        (mine,) = [s for s in snap["sessions"] if s["id"] == sid]
        assert mine["lanes"] == 2, mine
        assert snap["totals"]["lanes"] >= 2
        assert not [s for s in snap["sessions"] if s["state"] == "lane"]  # lane connections are not sessions


def test_another_sessions_token_is_refused(server):
    a, sid_a, grant_a = granted_session(server)
    b, sid_b, grant_b = granted_session(server)
    with a, b:
        with open_lane(server, grant_a, 0, session=grant_b.session) as lane:
            assert read_until_closed(lane) == b""
        server.wait_for_log(r"refused a lane connection: wrong token", session=sid_b)


def test_lane_frame_without_lane_ends_the_session(server):
    assert_malformed_ends_session(server, lane_copy_frame(0, 4096), "lane 0 is not open")


def test_lane_frame_past_the_grant_ends_the_session(server):
    assert_malformed_ends_session(server, lane_copy_frame(7, 4096), "lane 7 was never granted")


def test_device_to_host_on_a_lane_never_opened_ends_the_session(server):
    payload = struct.pack("<QQQII", 0x1000, 4096, 0, 0, 1)
    frame = protocol.pack_header(DTOH, len(payload), protocol.F_LANE | protocol.F_COLLECT, 1, 1) + payload
    assert_malformed_ends_session(server, frame, "lane 0 is not open")


def test_failed_device_to_host_piece_still_gets_its_frame(server):
    # the client waits for one frame per piece on its lane: a failed piece
    # (here: no context, a bad address) must send one too, marked failed
    sock, sid, grant = granted_session(server)
    with sock, open_lane(server, grant, 1) as lane:
        accepted(lane, 1)
        payload = struct.pack("<QQQII", 0x1000, 4096, 0, 1, 77)
        sock.sendall(protocol.pack_header(DTOH, len(payload), protocol.F_LANE | protocol.F_COLLECT, 1, 5) + payload)
        hdr, body = protocol.recv_frame(sock, time.monotonic() + 15)
        assert hdr.op == protocol.OP_REPLY and hdr.seq == 5 and struct.unpack_from("<i", body)[0] != 0, (hdr, body)
        lhdr, lbody = protocol.recv_frame(lane, time.monotonic() + 15)
        assert (lhdr.op, lhdr.flags, lhdr.length, lhdr.seq) == (protocol.OP_LANE, 1, 0, 77), lhdr


def test_lane_frame_of_another_op_ends_the_session(server):
    assert_malformed_ends_session(server, lane_copy_frame(0, 4096, op=op_id("cuInit")),
                                  "a lane frame must be a host-to-device copy")


@pytest.mark.parametrize("data, what", [
    (lambda: lane_data_frame(0, bytes(100)), "has 100"),            # not the size the copy frame says
    (lambda: lane_data_frame(1, bytes(4096)), "malformed data frame 0"),  # out of sequence
    (lambda: protocol.pack_header(protocol.OP_LANE, protocol.COPY_CHUNK + 1, 0, 0, 0), "malformed data frame 0"),
    (lambda: protocol.pack_header(protocol.OP_LANE + 1, 4096, 0, 0, 0), "malformed data frame 0"),
    (lambda: lane_data_frame(0, bytes(10))[:20], "closed inside data frame 0"),  # cut short, then closed
])
def test_bad_lane_data_ends_the_session(server, data, what):
    sock, sid, grant = granted_session(server)
    with sock:
        with open_lane(server, grant, 0) as lane:
            accepted(lane, 0)
            sock.sendall(lane_copy_frame(0, 4096))
            lane.sendall(data())
            if "closed inside" in what:
                lane.shutdown(socket.SHUT_WR)
            code, msg = expect_error_frame(sock)
    assert code == protocol.ERR_MALFORMED and what in msg, msg
    server.wait_for_log(r"session end", session=sid)
    assert server.alive()


def test_a_copy_whose_lane_data_never_comes_ends_the_session(tmp_path):
    """The worker's reader waits for a lane copy's data; a client that never
    sends it gets an ERROR frame naming the lane after GPUWIRE_WORKER_STUCK_S
    seconds, instead of both sides waiting for ever (issue 14: no hang)."""
    srv = start_server(tmp_path / "server.log", env={"GPUWIRE_WORKER_STUCK_S": "2"})
    try:
        sock, sid, grant = granted_session(srv)
        with sock:
            with open_lane(srv, grant, 0) as lane:
                accepted(lane, 0)
                t0 = time.monotonic()
                sock.sendall(lane_copy_frame(0, 4096))
                code, msg = expect_error_frame(sock)
        assert code == protocol.ERR_MALFORMED and "lane 0: no data frame arrived within 2 s" in msg, msg
        assert 1.5 < time.monotonic() - t0 < 30
        srv.wait_for_log(r"session end", session=sid)
        assert srv.alive()
    finally:
        srv.stop()


def test_lane_traffic_keeps_a_session_from_idling(tmp_path):
    # the server ends sessions whose connection is idle; bytes on a lane do not
    # show on the session's own socket, but a session moving them is not idle
    srv = start_server(tmp_path / "server.log", extra_args=("--lease-idle-timeout", "1"))
    try:
        sock, sid, grant = granted_session(srv)
        with sock, open_lane(srv, grant, 0) as lane:
            accepted(lane, 0)
            n = 64 << 10
            sock.sendall(lane_copy_frame(0, n))
            data = lane_data_frame(0, bytes(n))
            step = len(data) // 30 + 1
            for pos in range(0, len(data), step):  # about 3 s, the session's socket silent
                lane.sendall(data[pos:pos + step])
                time.sleep(0.1)
            assert not any("ending idle session" in ln for ln in srv.log_lines(session=sid)), srv.log_lines(sid)
            srv.wait_for_log(r"ending idle session", session=sid, timeout=10)  # idle now: ended
    finally:
        srv.stop()
