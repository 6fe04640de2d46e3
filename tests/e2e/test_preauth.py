"""Connections that have not authenticated yet are bounded apart from sessions
(issue 18, finding 2): a flood of idle connections without a token can no
longer take the session slots of clients that have one; past the bounds a
connection is closed at once; a refusal for a full server reaches a TLS client
inside TLS; a client that sends one byte of a TLS record and stalls costs the
server no CPU (finding 10). In-process server, stand-in worker (control_plane)."""

from __future__ import annotations

import shutil
import socket
import ssl
import time

import pytest

from control_plane import make_control
from gpuwire import auth, protocol, tls
from gpuwire.status import handshake


@pytest.fixture
def control(tmp_path):
    start, cleanup = make_control(tmp_path)
    yield start
    cleanup()


def _connect_from(source: str, port: int) -> socket.socket:
    s = socket.socket()
    s.bind((source, 0))  # any 127.x.y.z is this machine: a distinct peer address
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    return s


def _connect_or_reset(source: str, port: int) -> socket.socket | None:
    """A connection beyond the server's bounds may be reset before connect()
    even returns (the server closes it at once, and on a busy machine its RST
    can arrive first): None then, as closed at once as can be."""
    try:
        return _connect_from(source, port)
    except ConnectionResetError:
        return None


def _closed_at_once(s: socket.socket | None, within: float = 2.0) -> bool:
    """Whether the server closes s within `within` seconds (after any refusal it sends)."""
    if s is None:
        return True
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            if s.recv(4096) == b"":
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        pass
    return False


def _probe(port: int, token: str | None) -> protocol.Header:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        hdr, _ = handshake(s, protocol.pack_ext(status_probe=True), token, timeout=10)
        return hdr


def test_flood_without_token_leaves_sessions_to_token_holders(control, tmp_path):
    store = auth.TokenStore(tmp_path / "tokens.json")
    token, _ = store.create("ci")
    srv, log = control(tokens=store, max_sessions=4, max_preauth=64, max_preauth_per_peer=8)
    port = srv.address[1]
    flood = [_connect_from("127.0.0.2", port) for _ in range(8)]  # within the per-peer bound
    flood += [_connect_or_reset("127.0.0.2", port) for _ in range(22)]
    try:
        time.sleep(0.3)
        # the ninth and later connections from that peer were closed at once
        closed = sum(_closed_at_once(s, 0.5) for s in flood[8:])
        assert closed == len(flood) - 8
        # 30 idle connections and 4 session slots: the token holder still gets in
        assert _probe(port, token).op == protocol.OP_STATUS
        log.wait_for(r"closing connections at once: 8 from 127\.0\.0\.2 not yet authenticated")
        # every one that reached the server was refused by it (a reset before connect() returned may not have)
        assert srv.snapshot()["totals"]["refused"].get("preauth", 0) >= sum(s is not None for s in flood[8:])
    finally:
        for s in flood:
            if s is not None:
                s.close()


def test_total_bound_over_many_peers(control, tmp_path):
    srv, log = control(max_preauth=6, max_preauth_per_peer=100)
    port = srv.address[1]
    flood = [_connect_from(f"127.0.1.{i}", port) for i in range(1, 7)]
    try:
        time.sleep(0.3)
        late = _connect_or_reset("127.0.2.1", port)  # refused, possibly before connect() returned
        assert _closed_at_once(late), "a connection beyond --max-preauth was kept"
        if late is not None:
            late.close()
        log.wait_for(r"6 in all not yet authenticated \(--max-preauth\)")
    finally:
        for s in flood:
            s.close()
    time.sleep(0.5)  # their threads see the close and give the slots back
    assert _probe(port, None).op == protocol.OP_STATUS


def test_session_slots_count_only_authenticated_connections(control):
    srv, _ = control(max_sessions=1, handshake_timeout=30)
    port = srv.address[1]
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
    try:
        time.sleep(0.2)
        assert _probe(port, None).op == protocol.OP_STATUS
    finally:
        for s in idle:
            s.close()


OPENSSL = shutil.which("openssl")


@pytest.mark.skipif(OPENSSL is None, reason="the openssl command makes the test certificate")
def test_busy_refusal_reaches_a_tls_client_inside_tls(control, tmp_path):
    from test_tls import self_signed

    cert, key = self_signed(tmp_path, "server", "gpuwire-test-server")
    settings = tls.ServerTLS(tls.server_context(str(cert), str(key)), required=True, client_certs=False,
                             cert=str(cert))
    srv, _ = control(max_sessions=1, tls_settings=settings)
    port = srv.address[1]
    ctx = ssl.create_default_context(cafile=str(cert))

    def tls_client() -> ssl.SSLSocket:
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        return ctx.wrap_socket(raw, server_hostname="127.0.0.1")

    first = tls_client()
    try:
        hdr, _ = handshake(first, b"", None, timeout=10)   # a session: the one slot
        assert hdr.op == protocol.OP_HELLO_OK
        second = tls_client()  # before the fix the refusal came in plaintext and broke TLS
        with second:
            hdr, payload = handshake(second, b"", None, timeout=10)
            assert hdr.op == protocol.OP_ERROR
            assert "busy" in protocol.parse_error(payload)[1]
    finally:
        first.close()


def test_one_byte_of_tls_costs_no_cpu(control):
    srv, _ = control(handshake_timeout=4, max_preauth_per_peer=200, max_preauth=200)
    port = srv.address[1]
    conns = []
    try:
        for _ in range(120):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"\x16")  # the first byte of a TLS record, and nothing more
            conns.append(s)
        time.sleep(0.3)
        cpu0, t0 = time.process_time(), time.monotonic()
        time.sleep(2.0)
        used = (time.process_time() - cpu0) / (time.monotonic() - t0)
        # polling every 5 ms, 120 such connections kept about half a core busy
        assert used < 0.1, f"the server used {used:.2f} of a core on stalled TLS starts"
        # and the handshake timeout still ends them
        assert _closed_at_once(conns[0], within=6.0)
    finally:
        for s in conns:
            s.close()


def test_client_closed_at_once_says_why(tmp_path):
    """A real client whose connection is closed before its HELLO is answered
    names the likely cause, without blaming TLS."""
    from conftest import PROGRAMS_DIR, gw_run, start_server

    srv = start_server(tmp_path / "server.log", extra_args=("--max-preauth", "2"))
    time.sleep(0.5)  # start_server's own probe connection has left the count
    held = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(2)]
    try:
        time.sleep(0.3)
        r = gw_run([str(PROGRAMS_DIR / "vector_add_shared")], srv.address, timeout=60)
        assert r.returncode != 0
        assert "--max-preauth" in r.stderr and "TLS" not in r.stderr, r.stderr
    finally:
        for s in held:
            s.close()
        srv.stop()
