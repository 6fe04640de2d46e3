"""Tokens and challenge-response: the tokens file, the proof's exact bytes,
the server refusing wrong tokens with a clear ERROR and accepting right ones
(in-process, a Python client), and the `gpuwire token` / `gpuwire server`
commands."""

import hashlib
import hmac
import json
import os
import socket
import stat
import subprocess

import pytest

from conftest import GPUWIRE, gpuwire_env
from control_plane import control, dial, hello, next_frame  # noqa: F401 (fixture)
from gpuwire import auth, protocol
from gpuwire.status import StatusError, handshake


@pytest.fixture
def store(tmp_path):
    return auth.TokenStore(tmp_path / "state" / "tokens.json")


def test_token_format_and_storage(store):
    token, entry = store.create("laptop")
    assert auth.TOKEN_RE.match(token) and token.startswith(entry.id + ".")
    text = store.path.read_text()
    assert token.split(".")[1] not in text and token not in text          # the secret is not stored
    data = json.loads(text)["tokens"][0]
    assert data["key"] == hashlib.sha256(token.encode()).hexdigest() and data["name"] == "laptop"
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700
    assert store.insecure_mode() is None
    os.chmod(store.path, 0o644)
    assert "chmod 600" in store.insecure_mode()


def test_proof_bytes():
    token = "0123456789abcdef." + "ab" * 32
    nonce = bytes(range(32))
    proof = auth.make_proof(token, nonce)
    key = hashlib.sha256(token.encode()).digest()
    assert proof == b"0123456789abcdef" + hmac.new(key, nonce + b"gpuwire-auth-v1", hashlib.sha256).digest()
    assert len(proof) == protocol.PROOF_SIZE == 48
    with pytest.raises(auth.AuthError, match="malformed"):
        auth.make_proof("not-a-token", nonce)


def test_verify_and_revoke(store):
    token, entry = store.create("a")
    other, _ = store.create("b")
    nonce = os.urandom(32)
    assert store.verify(nonce, auth.make_proof(token, nonce)) == (True, entry.id, "a")
    ok, _, why = store.verify(os.urandom(32), auth.make_proof(token, nonce))  # replayed for another nonce
    assert not ok and "wrong secret" in why
    forged = entry.id + "." + other.split(".")[1]                            # right id, other secret
    assert not store.verify(nonce, auth.make_proof(forged, nonce))[0]
    ok, _, why = store.verify(nonce, auth.make_proof("f" * 16 + "." + "0" * 64, nonce))
    assert not ok and "unknown" in why
    reader = auth.TokenStore(store.path)          # a running server's view
    assert reader.verify(nonce, auth.make_proof(token, nonce))[0]
    assert [e.id for e in store.revoke("a")] == [entry.id]
    assert not reader.verify(nonce, auth.make_proof(token, nonce))[0]   # reloaded from disk
    assert [e.name for e in reader.entries()] == ["b"]
    assert store.revoke("nobody") == []


def test_broken_tokens_file(store):
    store.path.parent.mkdir(parents=True)
    store.path.write_text("{not json")
    with pytest.raises(auth.AuthError, match="cannot read tokens file"):
        store.entries()


@pytest.mark.parametrize("host, loop", [("127.0.0.1", True), ("::1", True), ("localhost", True),
                                        ("0.0.0.0", False), ("", False), ("10.1.2.3", False)])
def test_is_loopback(host, loop):
    assert auth.is_loopback(host) == loop


def test_client_token_sources(tmp_path):
    f = tmp_path / "tok"
    f.write_text("abc\n")
    assert auth.client_token({}, None) is None
    assert auth.client_token({"GPUWIRE_TOKEN": " xyz "}, None) == "xyz"
    assert auth.client_token({"GPUWIRE_TOKEN_FILE": str(f)}, None) == "abc"
    assert auth.client_token({"GPUWIRE_TOKEN": "xyz"}, str(f)) == "abc"
    with pytest.raises(auth.AuthError, match="cannot read token file"):
        auth.client_token({}, str(tmp_path / "missing"))


# --- the server side of challenge-response --------------------------------------------


class Recorder:
    """A socket wrapper that keeps every byte the client sent."""

    def __init__(self, sock):
        self.sock, self.sent = sock, bytearray()

    def sendall(self, data):
        self.sent += data
        self.sock.sendall(data)

    def __getattr__(self, name):
        return getattr(self.sock, name)


def test_right_token_accepted_secret_not_sent(control, store):
    token, entry = store.create("ci")
    srv, log = control(tokens=store)
    with dial(srv) as s:
        rec = Recorder(s)
        hdr, payload = handshake(rec, b"", token)
        assert hdr.op == protocol.OP_HELLO_OK, protocol.parse_error(payload) if hdr.op == protocol.OP_ERROR else hdr
        secret = token.split(".")[1]
        assert secret.encode() not in rec.sent and bytes.fromhex(secret) not in rec.sent
        assert hashlib.sha256(token.encode()).digest() not in rec.sent
    line = log.wait_for(r"authenticated")
    assert f"token={entry.id}" in line and "token_name=ci" in line
    log.wait_for(r"session start")
    assert srv.snapshot()["totals"]["auth_ok"] == 1


def test_challenge_frame(control, store):
    store.create("x")
    srv, _ = control(tokens=store)
    with dial(srv) as s:
        hello(s, 1)
        hdr, nonce = next_frame(s)
        assert hdr.op == protocol.OP_CHALLENGE == 9 and len(nonce) == 32
    with dial(srv) as s:
        hello(s, 1)
        assert next_frame(s)[1] != nonce   # fresh every time


def test_wrong_token_refused(control, store):
    token, entry = store.create("ci")
    srv, log = control(tokens=store)
    wrong = entry.id + "." + "0" * 64
    with dial(srv) as s:
        hdr, payload = handshake(s, b"", wrong)
        assert hdr.op == protocol.OP_ERROR
        code, msg = protocol.parse_error(payload)
        assert code == protocol.ERR_REFUSED
        assert "authentication failed" in msg and "not valid on this gpuwire server" in msg
        assert s.recv(10) == b""
    line = log.wait_for(r"authentication failed")
    assert "wrong secret" in line and f"token={entry.id}" in line
    assert not any("session start" in ln for ln in log.lines())
    snap = srv.snapshot()
    assert snap["totals"]["auth_failed"] == 1 and snap["totals"]["refused"]["auth"] == 1


def test_no_token_and_bad_proofs(control, store):
    store.create("x")
    srv, log = control(tokens=store)
    with dial(srv) as s:      # a client without a token closes at the challenge
        with pytest.raises(StatusError, match="requires a token"):
            handshake(s, b"", None)
    log.wait_for(r"closed the connection at the authentication challenge")
    with dial(srv) as s:      # anything but a PROOF
        hello(s, 1)
        next_frame(s)
        s.sendall(protocol.pack_frame(protocol.OP_REPLY, b"\0" * 48))
        hdr, payload = next_frame(s)
        code, msg = protocol.parse_error(payload)
        assert code == protocol.ERR_MALFORMED and "expected PROOF" in msg
    with dial(srv) as s:      # an oversized PROOF is refused before it is read
        hello(s, 1)
        next_frame(s)
        s.sendall(protocol.pack_header(protocol.OP_PROOF, 1 << 20))
        hdr, payload = next_frame(s)
        assert protocol.parse_error(payload)[0] == protocol.ERR_MALFORMED
    assert not any("session start" in ln for ln in log.lines())


def test_proof_timeout(control, store):
    store.create("x")
    srv, log = control(tokens=store, handshake_timeout=0.5)
    with dial(srv) as s:
        hello(s, 1)
        next_frame(s)
        hdr, payload = next_frame(s)
        assert "no authentication PROOF within 0.5 s" in protocol.parse_error(payload)[1]


def test_status_probe_needs_token_too(control, store):
    token, _ = store.create("x")
    srv, _ = control(tokens=store)
    with dial(srv) as s:
        hdr, payload = handshake(s, protocol.pack_ext(status_probe=True), "0" * 16 + "." + "1" * 64)
        assert hdr.op == protocol.OP_ERROR
    with dial(srv) as s:
        hdr, payload = handshake(s, protocol.pack_ext(status_probe=True), token)
        assert hdr.op == protocol.OP_STATUS and json.loads(payload)["server"]["auth"] is True


# --- commands ------------------------------------------------------------------


def gw(*args, env=None, timeout=60):
    return subprocess.run(GPUWIRE + list(args), capture_output=True, text=True, timeout=timeout,
                          env=gpuwire_env(env))


def test_token_commands(tmp_path):
    tf = str(tmp_path / "t" / "tokens.json")
    r = gw("token", "create", "--name", "alice", "--tokens-file", tf)
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    assert auth.TOKEN_RE.match(token) and "only time it is shown" in r.stderr
    r = gw("token", "list", "--tokens-file", tf)
    assert r.returncode == 0 and token.split(".")[0] in r.stdout and "alice" in r.stdout
    assert token.split(".")[1] not in r.stdout
    # the state dir from the environment, and from a server config file
    r = gw("token", "create", env={"GPUWIRE_STATE_DIR": str(tmp_path / "st")})
    assert r.returncode == 0 and (tmp_path / "st" / "tokens.json").is_file()
    cfg = tmp_path / "server.toml"
    cfg.write_text(f'[server]\ntokens_file = "{tf}"\n')
    r = gw("token", "list", "--config", str(cfg))
    assert "alice" in r.stdout
    r = gw("token", "revoke", "alice", "--tokens-file", tf)
    assert r.returncode == 0 and "revoked" in r.stdout
    r = gw("token", "revoke", "alice", "--tokens-file", tf)
    assert r.returncode == 1 and "no token" in r.stderr


def test_server_refuses_open_listen_without_tokens(tmp_path):
    r = gw("server", "--listen", "0.0.0.0:0", "--driver", "standin", "--tokens-file", str(tmp_path / "none.json"),
           timeout=120)
    assert r.returncode == 1
    assert "holds no tokens" in r.stderr and "--insecure-no-auth" in r.stderr


def test_server_subprocess_with_tokens(tmp_path):
    """`gpuwire server --require-auth` (what listening beyond loopback implies) and `gpuwire status`."""
    from conftest import start_server

    tf = tmp_path / "tokens.json"
    token, _ = auth.TokenStore(tf).create("ci")
    srv = start_server(tmp_path / "server.log", extra_args=("--tokens-file", str(tf), "--require-auth"))
    try:
        assert "auth=tokens" in srv.log_text()
        with socket.create_connection((srv.host, srv.port), timeout=10) as s:
            hdr, payload = handshake(s, protocol.pack_ext(status_probe=True), "0" * 16 + "." + "0" * 64)
            assert hdr.op == protocol.OP_ERROR and "authentication failed" in protocol.parse_error(payload)[1]
        r = gw("status", "--server", srv.address, env={"GPUWIRE_TOKEN": token})
        assert r.returncode == 0 and "reachable" in r.stdout, r.stderr
        r = gw("status", "--server", srv.address)
        assert r.returncode == 1 and "requires a token" in r.stderr
    finally:
        srv.stop()
    srv.wait_for_log(r"server exited", timeout=5)
