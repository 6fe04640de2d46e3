"""The server against hostile and broken clients, an unreachable server, and the CLI's help."""

import random
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import (GPUWIRE, NOT_BUILT, PROGRAMS_DIR, ServerProcess, client_api_digest, explain, free_port,
                      gpuwire_env, gw_run, start_server)
from gpuwire import protocol

# A frame's failure reason as the worker should log it (relayed with its session id).
BAD_FRAME_REASON = re.compile(r"malformed|invalid|truncat|too large|exceed|over the .*limit|unknown|unsupported|"
                              r"unexpected|incomplete", re.I)

DEVICE_SNIPPET = r"""
import ctypes, sys
lib = ctypes.CDLL("libcuda.so.1")
rc = lib.cuInit(0)
n = ctypes.c_int(0)
rc2 = lib.cuDeviceGetCount(ctypes.byref(n)) if rc == 0 else -1
print("cuInit", rc, "cuDeviceGetCount", rc2, n.value)
sys.exit(0 if rc == 0 and rc2 == 0 and n.value >= 1 else 3)
"""


def connect(server: ServerProcess) -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=10)
    sock.settimeout(10)
    return sock


def read_until_closed(sock: socket.socket, timeout: float = 15.0) -> bytes:
    """Everything the peer sends until it closes; fails the test if it never does."""
    deadline = time.monotonic() + timeout
    data = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            pytest.fail(f"connection still open after {timeout} s (received {bytes(data[:64])!r}...)")
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return bytes(data)
        if not chunk:
            return bytes(data)
        data += chunk


def expect_error_frame(sock: socket.socket) -> tuple[int, str]:
    data = read_until_closed(sock)
    assert len(data) >= protocol.HEADER_SIZE, f"expected an ERROR frame, got {data!r}"
    hdr = protocol.unpack_header(data[:protocol.HEADER_SIZE])
    assert hdr.op == protocol.OP_ERROR, f"expected op ERROR, got {hdr}"
    assert len(data) == protocol.HEADER_SIZE + hdr.length, "ERROR frame length does not match what came"
    return protocol.parse_error(data[protocol.HEADER_SIZE:])


def unique_pid() -> int:
    return random.randrange(3_000_000, 4_000_000_000)


def good_session(server: ServerProcess, pid: int) -> tuple[socket.socket, int]:
    """A connection past the handshake (HELLO_OK received); returns it and its session id."""
    sock = connect(server)
    sock.sendall(protocol.pack_hello(pid, "testhost", "pytest-client", client_api_digest()))
    hdr, payload = protocol.recv_frame(sock, time.monotonic() + 30)
    if hdr.op == protocol.OP_ERROR:
        pytest.fail(f"handshake refused: {protocol.parse_error(payload)}")
    assert hdr.op == protocol.OP_HELLO_OK, hdr
    ok = protocol.parse_hello_ok(payload)
    assert ok.proto_version == protocol.PROTO_VERSION and ok.device_count >= 1, ok
    return sock, server.session_of_pid(pid)


def assert_malformed_ends_session(server: ServerProcess, data: bytes, reason: str, before=None) -> None:
    """Sends data on a fresh session and checks the worker refuses it as malformed
    (an ERROR frame naming `reason`), ends that session only, and the server lives
    on. `before(sock)`, if given, reads what comes ahead of the ERROR frame."""
    sock, sid = good_session(server, unique_pid())
    with sock:
        sock.sendall(data)
        if before:
            before(sock)
        code, msg = expect_error_frame(sock)
        assert code == protocol.ERR_MALFORMED, (code, msg)
        assert reason in msg, msg
    server.wait_for_log(r"session end", session=sid)
    assert server.alive()


# --- handshake validation (the Python server itself) -----------------------


def test_wrong_magic_gets_error(server):
    with connect(server) as sock:
        sock.sendall(protocol.pack_hello(1234, "h", "p", 0, magic=b"NOTGPUWR"))
        code, msg = expect_error_frame(sock)
    assert code == protocol.ERR_MALFORMED
    assert "magic" in msg and "not a gpuwire client" in msg
    server.wait_for_log(r"handshake refused: not a gpuwire client: bad HELLO magic")
    assert server.alive()


def test_wrong_version_gets_error(server):
    with connect(server) as sock:
        sock.sendall(protocol.pack_hello(1234, "h", "p", 0, proto_version=99))
        code, msg = expect_error_frame(sock)
    assert code == protocol.ERR_VERSION
    assert "version 99" in msg and f"version {protocol.PROTO_VERSION}" in msg
    server.wait_for_log(r"handshake refused: client speaks gpuwire protocol version 99")
    assert server.alive()


@pytest.mark.parametrize("frame, reason", [
    (protocol.pack_header(protocol.OP_HELLO, 100_000), "outside"),
    (protocol.pack_header(protocol.OP_HELLO, protocol.MAX_PAYLOAD + 1), "exceeds"),
    (protocol.pack_header(protocol.OP_HELLO, 10) + b"x" * 10, "outside"),
    (protocol.pack_frame(protocol.OP_REPLY, b"\0" * 24), "first frame must be HELLO"),
    (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "exceeds"),
    # host_len says 10 but only 3 name bytes follow
    (protocol.pack_frame(protocol.OP_HELLO, protocol.HELLO.pack(protocol.HELLO_MAGIC, protocol.PROTO_VERSION, 0, 1, 10, 0) + b"abc"),
     "name lengths say"),
    (protocol.pack_frame(protocol.OP_HELLO, protocol.HELLO.pack(protocol.HELLO_MAGIC, protocol.PROTO_VERSION, 0, 1, 3, 0) + b"a\0c"),
     "NUL"),
], ids=["hello-too-long", "over-max-payload", "hello-too-short", "not-hello", "http", "name-length-mismatch",
        "nul-in-name"])
def test_malformed_hello_gets_error(server, frame, reason):
    with connect(server) as sock:
        sock.sendall(frame)
        code, msg = expect_error_frame(sock)
    assert code == protocol.ERR_MALFORMED
    assert reason in msg
    assert server.alive()


def test_truncated_hello_is_logged(server):
    with connect(server) as sock:
        sock.sendall(protocol.pack_hello(1, "h", "p", 0)[:20])
        sock.shutdown(socket.SHUT_WR)
        read_until_closed(sock)
    server.wait_for_log(r"handshake refused: truncated HELLO")
    assert server.alive()


# --- broken clients after the handshake (the worker, relayed by the server) ---


def _check_session_closed_with_reason(server, sock, sid):
    data = read_until_closed(sock)
    if data:  # an ERROR frame first is allowed; anything else is not
        hdr = protocol.unpack_header(data[:protocol.HEADER_SIZE])
        assert hdr.op == protocol.OP_ERROR, f"unexpected frame {hdr} after a bad frame"
    server.wait_for_log(r"session end", session=sid)
    worker_lines = [ln for ln in server.log_lines(sid) if re.search(r" src=worker( |$)", ln)]
    assert any(BAD_FRAME_REASON.search(ln) for ln in worker_lines), (
        "no worker log line gives the reason the session closed:\n" + "\n".join(server.log_lines(sid)))
    assert server.alive()


def test_garbage_after_handshake_closes_session(server):
    sock, sid = good_session(server, unique_pid())
    with sock:
        rng = random.Random(7)
        # a header announcing more than the payload limit, then noise
        sock.sendall(protocol.pack_header(0xBEEF, protocol.MAX_PAYLOAD + 12345, 0, 1, 1)
                     + bytes(rng.randrange(256) for _ in range(512)))
        _check_session_closed_with_reason(server, sock, sid)


def test_unknown_op_then_noise_closes_session(server):
    sock, sid = good_session(server, unique_pid())
    with sock:
        rng = random.Random(11)
        sock.sendall(bytes(rng.randrange(256) for _ in range(4096)))
        sock.shutdown(socket.SHUT_WR)
        _check_session_closed_with_reason(server, sock, sid)


def test_truncated_frame_after_handshake_closes_session(server):
    sock, sid = good_session(server, unique_pid())
    with sock:
        sock.sendall(protocol.pack_header(protocol.OP_FIRST_CALL, 100, 0, 1, 1) + b"0123456789")
        sock.shutdown(socket.SHUT_WR)
        _check_session_closed_with_reason(server, sock, sid)


def test_other_sessions_keep_working(server, tmp_path):
    """While clients misbehave (stalled handshake, garbage mid-session, a session
    left open), another client runs a program to completion."""
    stalled = connect(server)
    stalled.sendall(protocol.pack_hello(1, "h", "p", 0)[:10])
    idle, _ = good_session(server, unique_pid())
    bad, bad_sid = good_session(server, unique_pid())
    bad.sendall(b"\xff" * 64)
    try:
        vector_add = PROGRAMS_DIR / "vector_add_shared"
        cmd = [str(vector_add)] if vector_add.is_file() else [sys.executable, "-c", DEVICE_SNIPPET]
        result = gw_run(cmd, server=server.address, timeout=120)
        assert result.returncode == 0, explain(result, server)
        if vector_add.is_file():
            assert result.stdout.strip().splitlines()[-1].startswith("PASS"), explain(result, server)
        server.wait_for_log(r"session end", session=bad_sid)
    finally:
        for s in (stalled, idle, bad):
            s.close()
    assert server.alive()


def test_client_disconnecting_at_once_is_harmless(server):
    for _ in range(20):
        socket.create_connection((server.host, server.port), timeout=5).close()
    with connect(server) as sock:
        sock.sendall(protocol.pack_hello(1, "h", "p", 0, magic=b"XXXXXXXX"))
        code, _ = expect_error_frame(sock)
    assert code == protocol.ERR_MALFORMED and server.alive()


# --- unreachable server -------------------------------------------------------


@pytest.mark.parametrize("kind", ["python-ctypes", "vector_add_shared"])
def test_unreachable_server_fails_fast(kind):
    if kind == "python-ctypes":
        cmd = [sys.executable, "-c", DEVICE_SNIPPET]
    else:
        prog = PROGRAMS_DIR / "vector_add_shared"
        if not prog.is_file():
            pytest.skip(NOT_BUILT)
        cmd = [str(prog)]
    port = free_port()
    start = time.monotonic()
    result = gw_run(cmd, server=f"127.0.0.1:{port}", timeout=60)
    elapsed = time.monotonic() - start
    assert result.returncode != 0, explain(result)
    assert elapsed < 30, f"took {elapsed:.1f} s to give up on an unreachable server"
    text = result.stdout + result.stderr
    assert f"127.0.0.1:{port}" in text, "the message should name the server it could not reach:\n" + text
    assert "gpuwire" in text.lower(), text


# --- server lifecycle -----------------------------------------------------------


def test_sigterm_stops_server_and_workers(tmp_path):
    srv = start_server(tmp_path / "server.log")
    try:
        sock, sid = good_session(srv, unique_pid())
        worker_pid = int(srv.wait_for_log(r"session start.* worker_pid=(\d+)", session=sid).group(1))
        rc = srv.stop()
        assert rc == 0, "\n".join(srv.log_lines())
        assert "server exited" in srv.log_text()
        read_until_closed(sock, 10)  # the worker is gone, so is the session
        sock.close()
        assert _proc_state(worker_pid) in ("gone", "Z"), f"worker {worker_pid} still running after the server"
    finally:
        srv.stop()


def _proc_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return "gone"


def test_server_rejects_bad_listen_address():
    r = subprocess.run(GPUWIRE + ["server", "--listen", "nonsense:port", "--driver", "standin"],
                       capture_output=True, text=True, timeout=90, env=gpuwire_env())
    assert r.returncode == 2 and "--listen 'nonsense:port' is not valid: the port must be a number" in r.stderr, r.stderr


# --- CLI help ----------------------------------------------------------------------


@pytest.mark.parametrize("sub", [[], ["server"], ["run"], ["demo"], ["version"]], ids=lambda s: s[0] if s else "top")
def test_help(sub):
    r = subprocess.run(GPUWIRE + sub + ["--help"], capture_output=True, text=True, timeout=30, env=gpuwire_env())
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: gpuwire"), r.stdout
    assert len(r.stdout.splitlines()) >= 4, r.stdout


def test_console_script_help():
    script = Path(sys.executable).parent / "gpuwire"
    if not script.exists():
        pytest.skip(f"no console script beside {sys.executable} (package not installed in this environment)")
    r = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=30, env=gpuwire_env())
    assert r.returncode == 0 and "usage: gpuwire" in r.stdout


def test_version():
    from gpuwire import __version__

    r = subprocess.run(GPUWIRE + ["version"], capture_output=True, text=True, timeout=30, env=gpuwire_env())
    assert r.returncode == 0 and r.stdout.strip() == f"gpuwire {__version__}"
