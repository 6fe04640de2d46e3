"""Admission: who gets in and what they get. Bounds on connections not yet
authenticated (in all and per peer), token authentication (CHALLENGE ->
PROOF), session slots, GPU leases with the queue and its QUEUED notes, and
the status probe (a JSON snapshot and echo frames instead of a worker).
An admitted session goes to sessions.py."""

from __future__ import annotations

import json
import os
import select
import socket
import struct
import time
from typing import Callable

from gpuwire import protocol
from gpuwire.auth import AuthError, TokenStore
from gpuwire.config import ServerConfig
from gpuwire.leases import Lease, LeaseManager, LeaseRefused
from gpuwire.log import Logger
from gpuwire.server.sessions import Sessions
from gpuwire.server.state import Registry, Session, client_text, send_error
from gpuwire.slurm import jobs as slurm_jobs  # job tokens and admin requests (docs/scale-out.md)

PROBE_SECONDS = 30.0          # a status probe's echo frames end after this ...
PROBE_BYTES = 256 << 20       # ... or this many bytes either way
REVOKED_TEXT = "gpuwire: this token was revoked while its lease was queued (a Slurm job token: its job ended)"


class Admission:
    def __init__(self, config: ServerConfig, registry: Registry, leases: LeaseManager, sessions: Sessions,
                 log: Logger, tokens: TokenStore | None, snapshot: Callable[..., dict]):
        self.config = config
        self.registry = registry
        self.leases = leases
        self.sessions = sessions
        self.log = log
        self.tokens = tokens                  # None: no authentication
        self.snapshot = snapshot              # what a status probe answers
        self._active = 0                      # authenticated connections: sessions, queued, probes
        self._preauth = 0                     # connections before authentication (TLS, HELLO, PROOF)
        self._preauth_by_peer: dict[str, int] = {}
        self._preauth_note = 0.0              # when the last "too many unauthenticated" line was logged
        self.jobs = slurm_jobs.JobAdmin(tokens, registry, leases.gpu_count, log)

    # --- connections not yet authenticated -----------------------------------

    def open(self, peer_text: str, host: str) -> Session | None:
        """A new connection's Session, or None if it must be closed at once.
        Connections not yet authenticated are bounded apart from sessions, in all
        and per peer address, so a flood without a token cannot take the session
        slots; past those bounds a connection is closed at once (it has said
        nothing yet, so there is no protocol to answer it in)."""
        cfg, reg = self.config, self.registry
        sid = next(reg.ids)
        sess = None
        with reg.lock:
            reg.counters["connections"] += 1
            from_peer = self._preauth_by_peer.get(host, 0)
            over = ("per_peer" if from_peer >= cfg.max_preauth_per_peer
                    else "total" if self._preauth >= cfg.max_preauth else None)
            if over is None:
                self._preauth += 1
                self._preauth_by_peer[host] = from_peer + 1
                sess = reg.sessions[sid] = Session(sid, peer_text, preauth_host=host)
            note = over is not None and time.monotonic() - self._preauth_note >= 10.0
            if note:
                self._preauth_note = time.monotonic()
        if over is not None:
            reg.count_refused("preauth")
            if note:  # one line per 10 s: a flood must not flood the log too
                limit = (f"{cfg.max_preauth_per_peer} from {host}" if over == "per_peer"
                         else f"{cfg.max_preauth} in all")
                self.log.warn(f"closing connections at once: {limit} not yet authenticated "
                              f"(--max-preauth{'-per-peer' if over == 'per_peer' else ''})", peer=peer_text)
        return sess

    def _leave_preauth(self, sess: Session) -> None:
        with self.registry.lock:
            host, sess.preauth_host = sess.preauth_host, None
            if host is None:
                return
            self._preauth -= 1
            left = self._preauth_by_peer.get(host, 1) - 1
            if left > 0:
                self._preauth_by_peer[host] = left
            else:
                self._preauth_by_peer.pop(host, None)

    def close(self, sess: Session) -> None:
        """The connection ended: whatever it was counted in is free again."""
        self._leave_preauth(sess)
        with self.registry.lock:
            if sess.counted:
                self._active -= 1
            self.registry.sessions.pop(sess.id, None)

    # --- after the HELLO -----------------------------------------------------

    def serve(self, conn, sess: Session) -> None:
        """The client that sent sess.hello: authenticated (if tokens are required),
        given a session slot, then a status answer, an NVML session, or a lease
        and a GPU session."""
        hello = sess.hello
        assert hello is not None
        if self.tokens is not None and not self._authenticate(conn, sess):
            return
        if not self._enter_session(conn, sess):
            return
        if hello.ext.status_probe:
            self._status_probe(conn, sess)
            return
        entry = self._token_entry(sess)
        if entry is not None and entry.role == slurm_jobs.ROLE_ADMIN:
            self.registry.count_refused("admin_token")
            send_error(conn, protocol.ERR_REFUSED, "an admin token mints and revokes job tokens; it runs no session")
            return
        if hello.ext.nvml_only:  # NVML queries (libnvidia-ml.so.1) use no GPU: no lease
            self.sessions.run(conn, sess)
            return
        lease = self._acquire_lease(conn, sess)
        if lease is None:
            return
        if self._revoked(sess):  # its Slurm job ended while it waited: no worker
            self.leases.release(lease)
            self.log.info("token revoked while queued", session=sess.id)
            send_error(conn, protocol.ERR_REFUSED, REVOKED_TEXT)
            return
        try:
            self.sessions.run(conn, sess)
        finally:
            self.leases.release(lease)

    def _token_entry(self, sess: Session):
        """The session's token entry (role, Slurm job, GPUs), or None without tokens."""
        if self.tokens is None or not sess.token:
            return None
        try:
            return self.tokens.entry(sess.token)
        except AuthError:
            return None

    def _revoked(self, sess: Session) -> bool:
        """Whether the token the session authenticated with is gone (revoked or expired)."""
        return self.tokens is not None and bool(sess.token) and self._token_entry(sess) is None

    def _enter_session(self, conn, sess: Session) -> bool:
        """An authenticated connection takes a session slot; refused (in the
        protocol it speaks, TLS included) when all are taken."""
        self._leave_preauth(sess)
        max_sessions = self.config.max_sessions
        with self.registry.lock:
            full = self._active >= max_sessions
            if not full:
                self._active += 1
                sess.counted = True
        if full:
            self.registry.count_refused("busy")
            self.log.warn(f"refused: {max_sessions} sessions already active", session=sess.id, peer=sess.peer)
            send_error(conn, protocol.ERR_REFUSED,
                       f"gpuwire server is busy ({max_sessions} sessions active); try again later")
        return not full

    # --- authentication -------------------------------------------------------

    def _authenticate(self, conn: socket.socket, sess: Session) -> bool:
        """CHALLENGE -> PROOF. False (and the client told why) unless the proof is right."""
        assert self.tokens is not None
        reg, timeout = self.registry, self.config.handshake_timeout
        sid, peer = sess.id, sess.peer
        sess.state = "auth"
        nonce = os.urandom(protocol.NONCE_SIZE)
        deadline = time.monotonic() + timeout
        try:
            conn.settimeout(timeout)
            conn.sendall(protocol.pack_frame(protocol.OP_CHALLENGE, nonce))
            hdr, payload = protocol.recv_frame(conn, deadline, max_len=protocol.PROOF_SIZE)
            if hdr.op != protocol.OP_PROOF or len(payload) != protocol.PROOF_SIZE:
                raise protocol.ProtocolError(
                    protocol.ERR_MALFORMED,
                    f"expected PROOF (op {protocol.OP_PROOF}, {protocol.PROOF_SIZE} bytes) answering the "
                    f"CHALLENGE, got op {hdr.op} with {len(payload)} bytes")
        except protocol.Truncated:
            reg.count_refused("auth")
            self.log.warn("client closed the connection at the authentication challenge (no token set on the "
                          "client? set GPUWIRE_TOKEN or GPUWIRE_TOKEN_FILE)", session=sid, peer=peer)
            return False
        except protocol.ProtocolError as e:
            reg.count_refused("auth")
            self.log.warn(f"authentication refused: {e.message}", session=sid, peer=peer)
            send_error(conn, e.code, e.message)
            return False
        except socket.timeout:
            reg.count_refused("auth")
            msg = f"no authentication PROOF within {timeout:g} s"
            self.log.warn(f"authentication refused: {msg}", session=sid, peer=peer)
            send_error(conn, protocol.ERR_REFUSED, msg)
            return False
        except OSError as e:
            self.log.warn(f"authentication failed: {e}", session=sid, peer=peer)
            return False
        try:
            ok, token_id, reason = self.tokens.verify(nonce, payload)
        except AuthError as e:
            self.log.error(f"cannot check tokens: {e}", session=sid, peer=peer)
            send_error(conn, protocol.ERR_REFUSED, "gpuwire server cannot check tokens right now "
                                                   "(its tokens file is unreadable; see the server log)")
            return False
        if not ok:
            reg.count("auth_failed")
            reg.count_refused("auth")
            self.log.warn(f"authentication failed: {reason}", session=sid, peer=peer, token=client_text(token_id))
            send_error(conn, protocol.ERR_REFUSED,
                       "authentication failed: this token is not valid on this gpuwire server (unknown, "
                       "revoked or wrong secret); `gpuwire token create` on the server issues one")
            return False
        reg.count("auth_ok")
        sess.token = token_id
        self.log.info("authenticated", session=sid, peer=peer, token=token_id,
                      token_name=client_text(reason or "-"))
        return True

    # --- leases -----------------------------------------------------------------

    @staticmethod
    def _client_gone(conn: socket.socket) -> bool:
        """Whether a client waiting for its lease has closed the connection (its
        bytes, if it sent any, stay in the socket for the worker)."""
        try:
            readable, _, _ = select.select([conn], [], [], 0)
            if not readable:
                return False
            conn.settimeout(0.5)
            return conn.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _acquire_lease(self, conn: socket.socket, sess: Session) -> Lease | None:
        assert sess.hello is not None
        ext, sid, peer = sess.hello.ext, sess.id, sess.peer
        mode = "exclusive" if ext.exclusive else "shared"
        try:
            gpu, count, within = slurm_jobs.lease_scope(self._token_entry(sess), ext.gpu, ext.gpu_count)
            lease = self.leases.request(ext.exclusive, gpu, ext.mem_cap, sess.describe(), sid,
                                        count=count, within=within)
        except LeaseRefused as e:
            self.registry.count_refused("lease")
            self.log.warn(f"lease refused: {e}", session=sid, peer=peer)
            send_error(conn, protocol.ERR_REFUSED, f"gpuwire server refused the lease: {e}")
            return None
        sess.lease = lease
        what = f"{'an exclusive' if ext.exclusive else 'a shared'} lease on {lease.describe_gpus(self.leases.gpu_count)}"
        if lease.granted is None:
            pos = self.leases.position(lease)
            if ext.no_wait and pos is not None:
                self.leases.release(lease, refused=True)
                self.registry.count_refused("lease_busy")
                self.log.info(f"lease refused without waiting: held by {pos.holder}", session=sid, peer=peer,
                              lease=mode)
                send_error(conn, protocol.ERR_REFUSED,
                           f"gpuwire: {what} is not available now (held by {pos.holder}; "
                           f"{pos.waiting} waiting); not queueing because of --no-wait")
                return None
            if not self._wait_in_queue(conn, sess, lease, what):
                return None
        sess.lease = lease
        assert lease.granted is not None
        self.log.info("lease granted", session=sid, lease=mode, gpus=",".join(map(str, sorted(lease.gpus))),
                      mem_cap=lease.mem_cap or None, waited=f"{lease.granted - lease.requested:.3f}")
        return lease

    def _wait_in_queue(self, conn: socket.socket, sess: Session, lease: Lease, what: str) -> bool:
        sid = sess.id
        sess.state = "queued"
        self.log.info(f"waiting for {what}", session=sid, peer=sess.peer)
        next_note = 0.0
        while not self.leases.wait(lease, 0.25):
            if self.registry.stopping.is_set():
                self.leases.release(lease)
                send_error(conn, protocol.ERR_REFUSED, "gpuwire server is shutting down")
                return False
            if self._revoked(sess):
                self.leases.release(lease)
                self.log.info("token revoked while queued", session=sid)
                send_error(conn, protocol.ERR_REFUSED, REVOKED_TEXT)
                return False
            if self._client_gone(conn):
                self.leases.release(lease)
                self.log.info("client left the lease queue", session=sid,
                              waited=f"{time.monotonic() - lease.requested:.3f}")
                return False
            pos = self.leases.position(lease)
            if pos is not None and time.monotonic() >= next_note:
                text = (f"gpuwire: waiting for {what}: position {pos.position} of {pos.waiting}, "
                        f"held by {pos.holder}; waited {pos.waited:.0f} s")
                try:
                    conn.settimeout(5.0)
                    conn.sendall(protocol.pack_queued(pos.position, pos.waiting, pos.waited, text))
                except OSError:
                    self.leases.release(lease)
                    self.log.info("client left the lease queue", session=sid)
                    return False
                next_note = time.monotonic() + self.config.queue_interval
        return True

    # --- status probe -----------------------------------------------------------

    def _status_probe(self, conn: socket.socket, sess: Session) -> None:
        """Answer a status probe: one STATUS frame of JSON, then echo frames
        (request: u32 bytes wanted back + any filler; reply: that many zero bytes)
        so the client can time round trips and throughput. No worker starts."""
        sess.state = "probe"
        self.registry.count("probes")
        self.log.info("status probe", session=sess.id, peer=sess.peer)
        body = json.dumps(self.snapshot(logs=0), separators=(",", ":")).encode()
        deadline = time.monotonic() + PROBE_SECONDS
        moved = 0
        try:
            conn.settimeout(PROBE_SECONDS)
            conn.sendall(protocol.pack_frame(protocol.OP_STATUS, body))
            while moved < PROBE_BYTES:
                hdr, payload = protocol.recv_frame(conn, deadline)
                if hdr.op == protocol.OP_BYE:
                    return
                if hdr.op == protocol.OP_ADMIN:  # an admin request (gpuwire/slurm/jobs.py), answered in JSON
                    reply = self.jobs.answer(sess.token, payload)
                    conn.sendall(protocol.pack_frame(protocol.OP_ADMIN, reply, seq=hdr.seq))
                    continue
                if hdr.op != protocol.OP_STATUS or len(payload) < 4:
                    raise protocol.ProtocolError(protocol.ERR_MALFORMED,
                                                 f"a status probe sends STATUS or ADMIN frames, got op {hdr.op}")
                (want,) = struct.unpack_from("<I", payload)
                if want > protocol.MAX_PAYLOAD:
                    raise protocol.ProtocolError(protocol.ERR_MALFORMED, f"echo of {want} bytes asked; at most "
                                                                         f"{protocol.MAX_PAYLOAD}")
                conn.sendall(protocol.pack_header(protocol.OP_STATUS, want, seq=hdr.seq))
                if want:
                    conn.sendall(bytes(want))
                moved += len(payload) + want
        except protocol.Truncated:
            return
        except protocol.ProtocolError as e:
            self.log.warn(f"status probe ended: {e.message}", session=sess.id)
            send_error(conn, e.code, e.message)
        except (socket.timeout, OSError):
            return
