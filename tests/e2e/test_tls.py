"""TLS for the call stream: a TLS handshake with a self-signed certificate made
here (openssl CLI), a real CUDA test program through `gpuwire run --tls`
against the stand-in server, the status probe and NVML (gpuwire smi) over TLS,
client certificates, and the refusals: an untrusted certificate, a plaintext
client at a TLS server, a TLS client at a plaintext server, a missing client
certificate, each a clear error and none a hang. Also, in-process: the relay
between the TLS connection and the worker, and the first-bytes check that
tells TLS from a gpuwire HELLO."""

from __future__ import annotations

import shutil
import socket
import ssl
import struct
import subprocess
import time
from pathlib import Path

import pytest

from conftest import GPUWIRE, PROGRAMS_DIR, explain, gpuwire_env, start_server
from control_plane import make_control
from gpuwire import protocol, tls
from gpuwire.log import Logger
from gpuwire.status import handshake

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="the openssl command is needed to make test certificates")
VECTOR_ADD = PROGRAMS_DIR / "vector_add_shared"


def _openssl(*args: str, cwd: Path) -> None:
    r = subprocess.run([OPENSSL, *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"openssl {' '.join(args)} failed:\n{r.stderr}"


def self_signed(d: Path, name: str, cn: str, san: str = "IP:127.0.0.1,DNS:localhost") -> tuple[Path, Path]:
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
             "-keyout", f"{name}.key", "-out", f"{name}.pem", "-subj", f"/CN={cn}",
             "-addext", f"subjectAltName={san}", cwd=d)
    return d / f"{name}.pem", d / f"{name}.key"


def signed_by(d: Path, name: str, cn: str, ca: tuple[Path, Path]) -> tuple[Path, Path]:
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f"{name}.key",
             "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=d)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-CAcreateserial",
             "-days", "2", "-out", f"{name}.pem", cwd=d)
    return d / f"{name}.pem", d / f"{name}.key"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    if OPENSSL is None:
        pytest.skip("the openssl command is needed to make test certificates")
    d = tmp_path_factory.mktemp("certs")
    out = {"server": self_signed(d, "server", "gpuwire-test-server"),
           "other": self_signed(d, "other", "someone-else"),
           "client_ca": self_signed(d, "clientca", "gpuwire-test-client-ca", san="DNS:client-ca")}
    out["client"] = signed_by(d, "client", "laptop-1", out["client_ca"])
    return out


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory, certs):
    """A stand-in server that requires TLS, on loopback, with the self-signed certificate."""
    cert, key = certs["server"]
    srv = start_server(tmp_path_factory.mktemp("tls-server") / "server.log",
                       extra_args=("--tls-cert", str(cert), "--tls-key", str(key), "--require-tls"))
    yield srv
    srv.stop()


def gw(*args: str, env: dict[str, str] | None = None, timeout: float = 120.0) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(GPUWIRE + list(args), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              errors="replace", timeout=timeout, env=gpuwire_env(env))
    except subprocess.TimeoutExpired:
        pytest.fail(f"gpuwire {' '.join(args)} did not finish within {timeout} s (a hang)")


def needs_program():
    if not VECTOR_ADD.is_file():
        pytest.skip(f"{VECTOR_ADD} is not built (./scripts/setup)")


# --- end to end, through the C client library ------------------------------------


def test_tls_handshake_with_self_signed_certificate(tls_server, certs, tmp_path):
    """The CI check: a CUDA program through `gpuwire run --tls` with a self-signed server certificate."""
    needs_program()
    stats = tmp_path / "stats.json"
    r = gw("run", "--server", tls_server.address, "--tls", "--tls-ca", str(certs["server"][0]), "--stats",
           str(stats), "--", str(VECTOR_ADD))
    assert r.returncode == 0 and "PASS" in r.stdout, explain(r, tls_server)
    assert "lost the connection" not in r.stderr, r.stderr
    tls_server.wait_for_log(r"TLS established.* version=TLSv1\.[23]")
    tls_server.wait_for_log(r"session end")
    assert stats.is_file()


def test_tls_by_name_and_debug_trace(tls_server, certs):
    """The certificate's DNS name checked (localhost), and GPUWIRE_DEBUG says TLS is on."""
    needs_program()
    r = gw("run", "--server", f"localhost:{tls_server.port}", "--tls", "--tls-ca", str(certs["server"][0]), "--",
           str(VECTOR_ADD), env={"GPUWIRE_DEBUG": "1"})
    if r.returncode != 0 and "cannot reach" in r.stderr:
        pytest.skip("localhost does not resolve to 127.0.0.1 here")
    assert r.returncode == 0 and "PASS" in r.stdout, explain(r, tls_server)
    assert "TLS to localhost" in r.stderr and "TLSv1.3" in r.stderr, r.stderr


def test_untrusted_certificate_refused(tls_server, certs):
    needs_program()
    t0 = time.monotonic()
    r = gw("run", "--server", tls_server.address, "--tls", "--tls-ca", str(certs["other"][0]), "--",
           str(VECTOR_ADD), timeout=60)
    assert r.returncode != 0 and "PASS" not in r.stdout
    assert "is not trusted" in r.stderr and "--tls-ca" in r.stderr, r.stderr
    assert time.monotonic() - t0 < 30


def test_wrong_name_refused(tls_server, certs):
    needs_program()
    r = gw("run", "--server", tls_server.address, "--tls", "--tls-ca", str(certs["server"][0]),
           "--tls-server-name", "gpu-box.example", "--", str(VECTOR_ADD), timeout=60)
    assert r.returncode != 0 and "not trusted" in r.stderr and "mismatch" in r.stderr, r.stderr


def test_plaintext_client_refused_clearly(tls_server):
    needs_program()
    t0 = time.monotonic()
    r = gw("run", "--server", tls_server.address, "--no-tls", "--", str(VECTOR_ADD), timeout=60)
    assert r.returncode != 0
    assert "requires TLS" in r.stderr and "--tls" in r.stderr, r.stderr
    assert time.monotonic() - t0 < 30
    tls_server.wait_for_log(r"WARN .*refused a plaintext client: this server requires TLS")


def test_tls_client_at_plaintext_server(server):
    """A TLS client at a server without a certificate: a clear error, no hang."""
    needs_program()
    t0 = time.monotonic()
    r = gw("run", "--server", server.address, "--tls", "--", str(VECTOR_ADD), timeout=60)
    assert r.returncode != 0
    assert "TLS handshake with" in r.stderr and "--tls-cert" in r.stderr, r.stderr
    assert time.monotonic() - t0 < 30
    server.wait_for_log(r"started a TLS handshake: this server has no certificate")


def test_status_and_top_over_tls(tls_server, certs):
    ca = str(certs["server"][0])
    r = gw("status", "--server", tls_server.address, "--tls", "--tls-ca", ca)
    assert r.returncode == 0 and "reachable (TLSv1.3" in r.stdout, r.stdout + r.stderr
    r = gw("status", "--server", tls_server.address, "--no-tls")
    assert r.returncode == 1 and "requires TLS" in r.stderr
    r = gw("status", "--server", tls_server.address, "--tls")
    assert r.returncode == 1 and "not trusted" in r.stderr
    r = gw("top", "--once", "--server", tls_server.address, "--tls", "--tls-ca", ca)
    assert r.returncode == 0 and "GPUs" in r.stdout, r.stderr


def test_smi_over_tls(tls_server, certs):
    """NVML sessions (gpuwire's libnvidia-ml.so.1) and CUDA sessions of the smi helper, over TLS."""
    r = gw("smi", "--server", tls_server.address, "--tls", "--tls-ca", str(certs["server"][0]), "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "stand-in" in r.stdout and '"error"' not in r.stdout.split('"gpus"')[0], r.stdout


def test_client_certificates(tmp_path, certs):
    needs_program()
    cert, key = certs["server"]
    srv = start_server(tmp_path / "server.log", extra_args=("--tls-cert", str(cert), "--tls-key", str(key),
                                                            "--tls-client-ca", str(certs["client_ca"][0])))
    try:
        base = ["run", "--server", srv.address, "--tls-ca", str(cert)]  # TLS chosen by the server's demand
        r = gw(*base, "--tls", "--", str(VECTOR_ADD), timeout=60)
        assert r.returncode != 0 and "client certificate" in r.stderr, r.stderr
        srv.wait_for_log(r"TLS handshake refused: the client sent no certificate")
        ccert, ckey = certs["client"]
        r = gw(*base, "--tls", "--tls-cert", str(ccert), "--tls-key", str(ckey), "--", str(VECTOR_ADD))
        assert r.returncode == 0 and "PASS" in r.stdout, explain(r, srv)
        srv.wait_for_log(r"TLS established.* client_cert=laptop-1")
        # a certificate from another CA is refused
        ocert, okey = certs["other"]
        r = gw(*base, "--tls", "--tls-cert", str(ocert), "--tls-key", str(okey), "--", str(VECTOR_ADD), timeout=60)
        assert r.returncode != 0 and "PASS" not in r.stdout
        srv.wait_for_log(r"TLS handshake refused: the client's certificate is not signed by the client CA")
        # --tls-client-ca makes TLS required on loopback too
        r = gw(*base, "--no-tls", "--", str(VECTOR_ADD), timeout=60)
        assert r.returncode != 0 and "requires TLS" in r.stderr
    finally:
        srv.stop()


def test_server_tls_settings(tmp_path, certs):
    from gpuwire.server.listener import server_tls as _tls_settings

    log = Logger(open(tmp_path / "log", "w"))
    cert, key = (str(p) for p in certs["server"])
    s, err = _tls_settings("0.0.0.0", False, log, None, None, None, False, False)
    assert s is None and "needs TLS" in err and "--insecure-no-tls" in err
    s, err = _tls_settings("0.0.0.0", False, log, None, None, None, False, True)
    assert s is None and err is None  # plaintext beyond loopback, with a warning
    s, err = _tls_settings("0.0.0.0", False, log, cert, key, None, False, False)
    assert err is None and s.required and not s.client_certs
    s, err = _tls_settings("127.0.0.1", True, log, cert, key, None, False, False)
    assert err is None and not s.required
    s, err = _tls_settings("127.0.0.1", True, log, cert, key, str(certs["client_ca"][0]), False, False)
    assert s.required and s.client_certs
    assert "needs --tls-cert" in _tls_settings("127.0.0.1", True, log, None, key, None, False, False)[1]
    assert "needs a certificate" in _tls_settings("127.0.0.1", True, log, None, None, None, True, False)[1]
    assert "cannot use TLS certificate" in _tls_settings("127.0.0.1", True, log, key, key, None, False, False)[1]
    r = gw("server", "--listen", "0.0.0.0:0", "--driver", "standin", "--insecure-no-auth", timeout=60)
    assert r.returncode == 1 and "needs TLS" in r.stderr and "--tls-cert" in r.stderr


# --- in process: sniffing, the relay, the Python client --------------------------------


@pytest.fixture
def tls_control(tmp_path, certs):
    start, cleanup = make_control(tmp_path)
    cert, key = certs["server"]
    settings = tls.ServerTLS(tls.server_context(str(cert), str(key)), required=False, client_certs=False)

    def go(**kw):
        return start(tls_settings=settings, **kw)

    yield go
    cleanup()


def _client_ctx(certs) -> ssl.SSLContext:
    return tls.client_context(tls.ClientTLS(mode="1", ca=str(certs["server"][0])))


def _open(srv, certs):
    raw = socket.create_connection(srv.address, timeout=10)
    s = _client_ctx(certs).wrap_socket(raw, server_hostname="127.0.0.1")
    s.settimeout(10)
    return s


def test_relay_moves_bytes_both_ways(tls_control, certs):
    """Through TLS, the relay and a worker that echoes: many sizes, up to 8 MiB at once."""
    srv, log = tls_control()
    with _open(srv, certs) as s:
        hdr, _ = handshake(s, b"", None)
        assert hdr.op == protocol.OP_HELLO_OK
        for size in (1, 100, 16383, 16385, 1 << 20, 8 << 20):
            data = bytes((i * 7 + size) & 0xFF for i in range(size)) if size < 1 << 20 else \
                (b"gpuwire" * (size // 7 + 1))[:size]
            s.sendall(data)
            got = bytearray()
            while len(got) < size:
                chunk = s.recv(1 << 20)
                assert chunk, "connection closed"
                got += chunk
            assert bytes(got) == data
    log.wait_for(r"session end")
    snap = srv.snapshot()
    assert snap["totals"]["sessions_started"] == 1


def test_plaintext_and_tls_on_one_optional_server(tls_control, certs):
    """Without --require-tls on loopback both work; a HELLO whose length byte is 0x16 is not mistaken for TLS."""
    srv, log = tls_control()
    prog = "p" * (0x116 - 24 - 8)  # HELLO payload of 0x116 bytes: its first byte on the wire is 0x16
    with socket.create_connection(srv.address, timeout=10) as s:
        hdr, _ = handshake(s, b"", None, prog=prog)
        assert hdr.op == protocol.OP_HELLO_OK
    with _open(srv, certs) as s:
        hdr, _ = handshake(s, b"", None)
        assert hdr.op == protocol.OP_HELLO_OK
    log.wait_for(r"TLS established")


def test_tls_garbage_and_silence(tls_control, certs):
    srv, log = tls_control(handshake_timeout=0.5)
    # a ClientHello-looking start and then garbage: refused, logged, no hang
    with socket.create_connection(srv.address, timeout=10) as s:
        s.sendall(b"\x16\x03\x01\x00\x05hello")
        s.settimeout(10)
        try:
            while s.recv(4096):
                pass
        except ConnectionResetError:
            pass
    log.wait_for(r"WARN .*TLS handshake refused")
    # TLS started, then silence: the handshake timeout ends it
    with socket.create_connection(srv.address, timeout=10) as s:
        s.sendall(b"\x16\x03\x01")
        s.settimeout(10)
        assert s.recv(4096) == b""
    log.wait_for(r"TLS handshake refused: not finished within 0.5 s")


def test_sniff_classifies_first_bytes():
    def kind(data: bytes) -> str:
        a, b = socket.socketpair()
        with a, b:
            if data:
                a.sendall(data)
            else:
                a.shutdown(socket.SHUT_WR)
            return tls.sniff(b, 1.0)

    assert kind(b"\x16\x03\x01\x02\x00") == "tls"
    assert kind(b"\x16\x01\x00\x00") == "plain"          # HELLO of 0x116 bytes
    assert kind(b"\x16\x03\x00\x00") == "plain"          # HELLO of 0x316 bytes
    assert kind(struct.pack("<I", 40)) == "plain"
    assert kind(b"") == "closed"


def test_client_settings():
    assert tls.client_settings({}).mode == "auto"
    assert tls.client_settings({"GPUWIRE_TLS": "on"}).mode == "1"
    assert tls.client_settings({"GPUWIRE_TLS": "0"}).mode == "0"
    with pytest.raises(tls.TLSError):
        tls.client_settings({"GPUWIRE_TLS": "maybe"})
    a, b = socket.socketpair()
    with a, b:
        assert tls.peer_is_loopback(a)
    with socket.socket() as s:
        assert not tls.peer_is_loopback(s)  # not connected: not known to be loopback
