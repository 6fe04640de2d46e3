"""The client side of admin requests (jobs.py has the server's): connect as
`gpuwire status` does (TLS by the usual rules, the admin token answering the
challenge), send one JSON request in an ADMIN frame, return
the JSON answer. Used by the prolog and epilog (hooks.py)."""

from __future__ import annotations

import json
import socket
import time

from gpuwire import address as addresses
from gpuwire import protocol, tls
from gpuwire.auth import AuthError
from gpuwire.slurm.jobs import REQUEST_MAX
from gpuwire.status import StatusError, handshake

REPLY_MAX = 4 << 20


class AdminRequestFailed(Exception):
    pass


def request(server: str, admin_token: str, req: dict, timeout: float = 15.0,
            tls_settings: tls.ClientTLS | None = None) -> dict:
    """The server's answer to `req` (a dict with "ok": True); raises
    AdminRequestFailed with one line when it cannot be asked or says no."""
    body = json.dumps(req, separators=(",", ":")).encode()
    if len(body) > REQUEST_MAX:
        raise AdminRequestFailed(f"admin request of {len(body)} bytes is too long")
    try:
        host, port = addresses.parse(server)
        sock = socket.create_connection((host, port), timeout=timeout)
    except (OSError, ValueError) as e:
        raise AdminRequestFailed(f"cannot reach gpuwire server {server}: {getattr(e, 'strerror', None) or e}") from e
    try:
        sock = tls.wrap_client(sock, host, tls_settings or tls.client_settings(), timeout)
        with sock:
            hdr, payload = handshake(sock, protocol.pack_ext(status_probe=True), admin_token, timeout,
                                     prog="gpuwire-slurm")
            if hdr.op == protocol.OP_ERROR:
                raise AdminRequestFailed(f"{server} refused: {protocol.parse_error(payload)[1]}")
            if hdr.op != protocol.OP_STATUS:
                raise AdminRequestFailed(f"{server}: unexpected answer op {hdr.op} to the status probe")
            sock.sendall(protocol.pack_frame(protocol.OP_ADMIN, body, seq=1))
            hdr, payload = protocol.recv_frame(sock, time.monotonic() + timeout, max_len=REPLY_MAX)
            if hdr.op == protocol.OP_ERROR:
                raise AdminRequestFailed(f"{server} refused: {protocol.parse_error(payload)[1]} (a server without "
                                         f"Slurm support?)")
            try:
                sock.sendall(protocol.pack_frame(protocol.OP_BYE))
            except OSError:
                pass
    except (tls.TLSError, StatusError, AuthError) as e:
        raise AdminRequestFailed(f"{server}: {e}") from e
    except protocol.ProtocolError as e:
        raise AdminRequestFailed(f"{server}: {e.message}") from e
    except OSError as e:
        raise AdminRequestFailed(f"{server}: {e.strerror or e}") from e
    try:
        reply = json.loads(payload)
    except ValueError as e:
        raise AdminRequestFailed(f"{server}: the answer is not JSON: {e}") from e
    if not isinstance(reply, dict):
        raise AdminRequestFailed(f"{server}: the answer is not a JSON object")
    if not reply.get("ok"):
        raise AdminRequestFailed(f"{server}: {str(reply.get('error', 'refused'))[:500]}")
    return reply
