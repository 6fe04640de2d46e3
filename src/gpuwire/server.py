"""The gpuwire server daemon: accepts clients, checks their HELLO, and hands each
connection to its own data-plane worker process (gpuwire-worker).

Standard library only. One thread per connection: it reads the handshake,
authenticates the client (when tokens are required), obtains its GPU lease
(queueing if needed), spawns the worker with the socket, then relays the
worker's log lines until it exits. A status probe gets a JSON answer instead of
a worker. Nothing a client sends can raise out of a connection thread.
docs/server.md describes the control plane.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import re
import select
import signal
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from gpuwire import __version__, address, paths, protocol, session_stats, tcpinfo, tls, visible
from gpuwire import cache as content_cache  # docs/cache.md
from gpuwire.auth import AuthError, TokenStore
from gpuwire.driver import Driver
from gpuwire.leases import Lease, LeaseManager, LeaseRefused
from gpuwire.log import Logger, clean

DEFAULT_LISTEN = address.DEFAULT_SERVER
HANDSHAKE_TIMEOUT = 10.0
WORKER_STOP_GRACE = 3.0
QUEUE_INTERVAL = 2.0          # seconds between QUEUED frames to a waiting client
PROBE_SECONDS = 30.0          # a status probe's echo frames end after this ...
PROBE_BYTES = 256 << 20       # ... or this many bytes either way
# TCP keepalive on every connection: a client whose machine vanishes (no FIN, no RST)
# is noticed after about this many seconds of silence, and data it never
# acknowledges ends the connection after as long (docs/security.md).
DEAD_PEER_TIMEOUT = 90.0
_WORKER_PREFIX = re.compile(r"^worker session=\S+: ")
_LEVEL_WORDS = {"DEBUG": "DEBUG", "INFO": "INFO", "WARN": "WARN", "WARNING": "WARN", "ERROR": "ERROR",
                "FATAL": "ERROR"}


def parse_address(text: str, default_port: int = address.DEFAULT_PORT) -> tuple[str, int]:
    """A listening address (address.py's syntax; port 0 picks a free one). Raises ValueError."""
    return address.parse(text, default_port, listen=True)


format_address = address.format


def describe_status(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def _token(text: str) -> str:
    """Client-supplied name made safe for one space-separated key=value field."""
    return clean(text, 255).replace(" ", "_") or "?"


@dataclass
class Session:
    """One connection, from accept to close (what status and metrics show)."""
    id: int
    peer: str
    started: float = field(default_factory=time.time)
    state: str = "handshake"        # handshake, auth, queued, active, probe
    hello: protocol.Hello | None = None
    token: str | None = None        # id of the token it authenticated with
    lease: Lease | None = None
    worker_pid: int | None = None
    watch: socket.socket | None = None  # duplicate of the worker's socket, for TCP_INFO
    cache: dict | None = None  # the worker's latest "cache stats" counters (cache.py)
    tls: dict | None = None             # TLS version, cipher, client certificate (tls.TLSConn.info)
    stats: session_stats.Block | None = None  # the worker's counters: calls, round trips, bytes, busy
    rates: session_stats.Rates = field(default_factory=session_stats.Rates)
    lane_chan: socket.socket | None = None  # where this session's worker takes its lanes (Unix socket)
    lanes_open: int = 0                     # lanes handed to its worker
    lane_bytes_seen: int = 0                # the worker's bytes in + out when the idle check last looked
    lane_active_at: float = 0.0             # time.monotonic() when that count last moved
    preauth_host: str | None = None         # counted among unauthenticated connections from this host
    counted: bool = False                   # holds one of max_sessions

    def describe(self) -> str:
        h = self.hello
        return f"{_token(h.host)} pid {h.pid} {_token(h.prog)} (session {self.id})" if h else f"session {self.id}"


class Server:
    def __init__(self, listen: str, driver: Driver, log: Logger | None = None,
                 handshake_timeout: float = HANDSHAKE_TIMEOUT, max_sessions: int = 256,
                 max_preauth: int = 128, max_preauth_per_peer: int = 16,
                 dead_peer_timeout: float = DEAD_PEER_TIMEOUT,
                 worker_cmd: list[str] | None = None, tokens: TokenStore | None = None,
                 lease_idle_timeout: float = 0.0, queue_interval: float = QUEUE_INTERVAL,
                 log_tail=None, tls_settings: tls.ServerTLS | None = None):
        self.listen_host, self.listen_port = parse_address(listen)
        self.driver = driver
        self.log = log or Logger()
        self.handshake_timeout = handshake_timeout
        self.max_sessions = max_sessions
        self.max_preauth = max_preauth                    # connections not yet authenticated, in all ...
        self.max_preauth_per_peer = max_preauth_per_peer  # ... and from one peer address
        self.dead_peer_timeout = dead_peer_timeout
        self.worker_cmd = worker_cmd if worker_cmd is not None else [str(paths.worker())]
        self.tokens = tokens                  # None: no authentication
        self.nvml_path = _nvml_path(driver)   # what workers dlopen for NVML requests
        self.leases = LeaseManager(driver.device_count)
        self.lease_idle_timeout = lease_idle_timeout  # 0: none
        self.lanes = 3  # extra connections a plaintext session may open for copy bytes (0: none)
        self.client_stall_timeout = 60.0  # a worker ends a session whose client reads nothing this long (0: never)
        self.queue_interval = queue_interval
        self.log_tail = log_tail              # callable(n) -> recent log lines, for the admin endpoint
        self.tls = tls_settings               # None: plaintext only
        self.address: tuple[str, int] | None = None
        self._sock: socket.socket | None = None
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._active = 0                      # authenticated connections: sessions, queued, probes
        self._preauth = 0                     # connections before authentication (TLS, HELLO, PROOF)
        self._preauth_by_peer: dict[str, int] = {}
        self._preauth_note = 0.0              # when the last "too many unauthenticated" line was logged
        self._workers: dict[int, subprocess.Popen] = {}
        self._sessions: dict[int, Session] = {}
        self._stop = threading.Event()
        self._stop_reason = ""
        self.started = time.time()
        self.counters = {"connections": 0, "sessions": 0, "probes": 0, "auth_ok": 0, "auth_failed": 0,
                         "idle_ended": 0, "bytes_sent_ended": 0, "bytes_received_ended": 0, "calls_ended": 0,
                         "round_trips_ended": 0, "tls_sessions": 0, "lanes": 0}
        self.refused: dict[str, int] = {}     # reason -> count
        self.cache_dir = None                 # content cache folder for workers (docs/cache.md); None: off
        self.cache_max_bytes = 0
        self.cache_scope = "shared"           # "tenant": a folder per token id (docs/cache.md)
        self.cache_disk = None                # cache.DiskFigures, for metrics
        self.cache_ended: dict[str, int] = {}  # cache counters of sessions that ended

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counters[key] = self.counters.get(key, 0) + n

    def _refuse_count(self, reason: str) -> None:
        with self._lock:
            self.refused[reason] = self.refused.get(reason, 0) + 1

    # --- lifecycle --------------------------------------------------------

    def bind(self) -> tuple[str, int]:
        infos = socket.getaddrinfo(self.listen_host, self.listen_port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
        family, stype, proto, _, sockaddr = infos[0]
        sock = socket.socket(family, stype, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(sockaddr)
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        sock.settimeout(0.5)  # the accept loop wakes up to notice a stop request
        self._sock = sock
        name = sock.getsockname()
        self.address = (name[0], name[1])
        return self.address

    @property
    def address_text(self) -> str:
        assert self.address is not None
        return format_address(*self.address)

    def serve_forever(self) -> None:
        if self._sock is None:
            self.bind()
        self.log.info(f"listening on {self.address_text}", address=self.address_text, driver=self.driver.kind,
                      driver_path=str(self.driver.path), auth="tokens" if self.tokens is not None else "off",
                      tls="off" if self.tls is None else "required" if self.tls.required else "optional")
        assert self._sock is not None
        if self.lease_idle_timeout > 0:
            threading.Thread(target=self._idle_reaper, daemon=True, name="gpuwire-idle-reaper").start()
        while not self._stop.is_set():
            try:
                conn, peer = self._sock.accept()
            except socket.timeout:
                continue
            except OSError as e:
                if self._stop.is_set():
                    break
                self.log.error(f"accept failed: {e}")
                time.sleep(0.1)  # e.g. out of file descriptors: do not spin
                continue
            self._admit(conn, peer)
        why = f" ({self._stop_reason})" if self._stop_reason else ""
        self.log.info(f"stopped accepting connections{why}")

    def request_stop(self, reason: str = "") -> None:
        """Safe from a signal handler (no locks, no logging): the accept loop
        exits within 0.5 s and logs the reason."""
        self._stop_reason = reason
        self._stop.set()

    def stop(self) -> None:
        """Stop accepting and end every worker (SIGTERM, then SIGKILL after a grace period)."""
        self._stop.set()
        if self._sock is not None:
            try:
                # shutdown (not just close) wakes an accept() in progress and stops listening now
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                self._sock.close()
            except OSError:
                pass
        with self._lock:
            workers = dict(self._workers)
        for sid, proc in workers.items():
            self.log.info("terminating worker", session=sid, worker_pid=proc.pid)
            try:
                proc.terminate()
            except OSError:
                pass
        deadline = time.monotonic() + WORKER_STOP_GRACE
        for proc in workers.values():
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    # --- connections ------------------------------------------------------

    def _admit(self, conn: socket.socket, peer: tuple) -> None:
        """Connections not yet authenticated are bounded apart from sessions, in all
        and per peer address, so a flood without a token cannot take the session
        slots; past those bounds a connection is closed at once (it has said
        nothing yet, so there is no protocol to answer it in)."""
        sid = next(self._ids)
        peer_text = format_address(peer[0], peer[1])
        host = peer[0]
        with self._lock:
            self.counters["connections"] += 1
            from_peer = self._preauth_by_peer.get(host, 0)
            over = ("per_peer" if from_peer >= self.max_preauth_per_peer
                    else "total" if self._preauth >= self.max_preauth else None)
            if over is None:
                self._preauth += 1
                self._preauth_by_peer[host] = from_peer + 1
                self._sessions[sid] = Session(sid, peer_text, preauth_host=host)
            note = over is not None and time.monotonic() - self._preauth_note >= 10.0
            if note:
                self._preauth_note = time.monotonic()
        if over is not None:
            self._refuse_count("preauth")
            if note:  # one line per 10 s: a flood must not flood the log too
                limit = (f"{self.max_preauth_per_peer} from {host}" if over == "per_peer"
                         else f"{self.max_preauth} in all")
                self.log.warn(f"closing connections at once: {limit} not yet authenticated "
                              f"(--max-preauth{'-per-peer' if over == 'per_peer' else ''})", peer=peer_text)
            _close_now(conn)
            return
        _keepalive(conn, self.dead_peer_timeout, self.client_stall_timeout)
        t = threading.Thread(target=self._connection, args=(conn, sid, peer_text), daemon=True,
                             name=f"gpuwire-session-{sid}")
        t.start()

    def _leave_preauth(self, sess: Session) -> None:
        with self._lock:
            host, sess.preauth_host = sess.preauth_host, None
            if host is None:
                return
            self._preauth -= 1
            left = self._preauth_by_peer.get(host, 1) - 1
            if left > 0:
                self._preauth_by_peer[host] = left
            else:
                self._preauth_by_peer.pop(host, None)

    def _enter_session(self, conn, sess: Session) -> bool:
        """An authenticated connection takes a session slot; refused (in the
        protocol it speaks, TLS included) when all are taken."""
        self._leave_preauth(sess)
        with self._lock:
            full = self._active >= self.max_sessions
            if not full:
                self._active += 1
                sess.counted = True
        if full:
            self._refuse_count("busy")
            self.log.warn(f"refused: {self.max_sessions} sessions already active", session=sess.id, peer=sess.peer)
            self._send_error(conn, protocol.ERR_REFUSED,
                             f"gpuwire server is busy ({self.max_sessions} sessions active); try again later")
        return not full

    def _connection(self, conn: socket.socket, sid: int, peer: str) -> None:
        sess = self._sessions[sid]
        try:
            secured = self._tls_accept(conn, sess)
            if secured is None:
                return
            conn = secured  # a TLSConn for TLS clients, else the socket itself
            hello = self._handshake(conn, sid, peer)
            if hello is None:
                self._refuse_count("handshake")
                return
            if isinstance(hello, protocol.LaneHello):
                sess.state = "lane"
                self._hand_over_lane(conn, sess, hello)
                return
            sess.hello = hello
            if self.tokens is not None and not self._authenticate(conn, sess):
                return
            if not self._enter_session(conn, sess):
                return
            if hello.ext.status_probe:
                self._status_probe(conn, sess)
                return
            if hello.ext.nvml_only:  # NVML queries (libnvidia-ml.so.1) use no GPU: no lease
                self._run_session(conn, sid, peer, hello, sess)
                return
            lease = self._acquire_lease(conn, sess)
            if lease is None:
                return
            try:
                self._run_session(conn, sid, peer, hello, sess)
            finally:
                self.leases.release(lease)
        except Exception as e:  # the server must outlive any single connection
            self.log.error(f"internal error in connection thread: {type(e).__name__}: {e}", session=sid, peer=peer)
        finally:
            try:
                conn.close()
            except OSError:
                pass
            self._leave_preauth(sess)
            with self._lock:
                if sess.counted:
                    self._active -= 1
                self._sessions.pop(sid, None)

    def _send_error(self, conn: socket.socket, code: int, message: str, seq: int = 0) -> None:
        try:
            conn.settimeout(2.0)
            conn.sendall(protocol.pack_error(code, message, seq))
        except OSError:
            pass  # the client may already be gone; closing is all that is left

    def _tls_accept(self, conn: socket.socket, sess: Session):
        """What the control plane talks through: conn itself (plaintext, when
        allowed) or a tls.TLSConn after the TLS handshake. None: refused (logged)."""
        sid, peer = sess.id, sess.peer
        kind = tls.sniff(conn, self.handshake_timeout)
        if kind == "timeout":
            msg = f"no complete HELLO within {self.handshake_timeout:g} s"
            self._refuse_count("handshake")
            self.log.warn(f"handshake refused: {msg}", session=sid, peer=peer)
            if self.tls is None or not self.tls.required:
                self._send_error(conn, protocol.ERR_MALFORMED, msg)
            return None
        if kind == "tls":
            if self.tls is None:
                self._refuse_count("tls")
                self.log.warn("refused a client that started a TLS handshake: this server has no certificate "
                              "(start it with --tls-cert and --tls-key, or have the client use --no-tls, "
                              "GPUWIRE_TLS=0)", session=sid, peer=peer)
                return None
            try:
                secured = tls.TLSConn.accept(conn, self.tls.context, self.handshake_timeout)
            except tls.TLSError as e:
                self._refuse_count("tls")
                self.log.warn(f"TLS handshake refused: {e}", session=sid, peer=peer)
                return None
            except socket.timeout:
                self._refuse_count("tls")
                self.log.warn(f"TLS handshake refused: not finished within {self.handshake_timeout:g} s",
                              session=sid, peer=peer)
                return None
            except OSError as e:
                self.log.warn(f"TLS handshake failed: {e}", session=sid, peer=peer)
                return None
            sess.tls = secured.info()
            self._count("tls_sessions")
            self.log.debug("TLS established", session=sid, peer=peer, **{k: _token(str(v)) for k, v in
                                                                          sess.tls.items()})
            return secured
        if kind == "plain" and self.tls is not None and self.tls.required:
            self._refuse_count("tls")
            self.log.warn("refused a plaintext client: this server requires TLS", session=sid, peer=peer)
            self._send_error(conn, protocol.ERR_REFUSED,
                             "this gpuwire server requires TLS: connect with TLS (gpuwire run --tls, or "
                             "GPUWIRE_TLS=1; --tls-ca or GPUWIRE_TLS_CA names the CA of the server's certificate)")
            return None
        return conn  # plaintext, or closed (the handshake says so)

    def _handshake(self, conn: socket.socket, sid: int, peer: str) -> protocol.Hello | protocol.LaneHello | None:
        deadline = time.monotonic() + self.handshake_timeout
        seq = 0
        try:
            hdr = protocol.unpack_header(protocol.recv_exact(conn, protocol.HEADER_SIZE, deadline))
            seq = hdr.seq
            if hdr.op == protocol.OP_LANE:
                if hdr.length != protocol.LANE_HELLO.size:  # refused before reading what it claims
                    raise protocol.ProtocolError(protocol.ERR_MALFORMED, f"LANE hello of {hdr.length} bytes, "
                                                 f"expected {protocol.LANE_HELLO.size}")
                return protocol.parse_lane_hello(hdr, protocol.recv_exact(conn, hdr.length, deadline))
            protocol.check_hello_header(hdr)
            return protocol.parse_hello(protocol.recv_exact(conn, hdr.length, deadline), hdr.flags)
        except protocol.Truncated as e:
            if e.got == 0 and e.wanted == protocol.HEADER_SIZE:
                self.log.info("client closed the connection before sending HELLO", session=sid, peer=peer)
            else:
                self.log.warn(f"handshake refused: truncated HELLO: {e.message}", session=sid, peer=peer)
            return None
        except protocol.ProtocolError as e:
            self.log.warn(f"handshake refused: {e.message}", session=sid, peer=peer,
                          code=protocol.ERROR_NAMES.get(e.code, e.code))
            self._send_error(conn, e.code, e.message, seq)
            return None
        except socket.timeout:
            msg = f"no complete HELLO within {self.handshake_timeout:g} s"
            self.log.warn(f"handshake refused: {msg}", session=sid, peer=peer)
            self._send_error(conn, protocol.ERR_MALFORMED, msg, seq)
            return None
        except OSError as e:
            self.log.warn(f"handshake failed: {e}", session=sid, peer=peer)
            return None

    def _hand_over_lane(self, conn, sess: Session, lane: protocol.LaneHello) -> None:
        """A lane connection goes, with its hello, to the worker of the session
        it names; that worker checks the token (a wrong one is closed there)."""
        def refuse(why: str) -> None:
            self._refuse_count("lane")
            self.log.warn(f"refused a lane connection: {why}", session=sess.id, peer=sess.peer,
                          lane_session=lane.session, lane=lane.lane)
            self._send_error(conn, protocol.ERR_REFUSED, f"gpuwire server refused the lane: {why}")

        if isinstance(conn, tls.TLSConn):
            refuse("lanes are plaintext only (a TLS session is granted none)")
            return
        conn.settimeout(None)  # the worker gets a blocking socket (the flag is shared with its copy)
        with self._lock:  # the session's end closes its channel under the same lock
            target = self._sessions.get(lane.session)
            chan = target.lane_chan if target is not None else None
            if chan is None:
                why = f"no session {lane.session} with lanes on this server"
            else:
                try:
                    socket.send_fds(chan, [lane.raw], [conn.fileno()])
                    why = ""
                    if not target.lanes_open:
                        target.lane_active_at = time.monotonic()
                    target.lanes_open += 1
                except OSError as e:  # the worker is gone, or not taking lanes (its channel is full)
                    why = f"session {lane.session} takes no lane now ({e.strerror or e})"
        if why:
            refuse(why)
            return
        self._count("lanes")
        self.log.debug("lane handed over", session=lane.session, lane=lane.lane, peer=sess.peer)

    # --- authentication -----------------------------------------------------

    def _authenticate(self, conn: socket.socket, sess: Session) -> bool:
        """CHALLENGE -> PROOF. False (and the client told why) unless the proof is right."""
        assert self.tokens is not None
        sid, peer = sess.id, sess.peer
        sess.state = "auth"
        nonce = os.urandom(protocol.NONCE_SIZE)
        deadline = time.monotonic() + self.handshake_timeout
        try:
            conn.settimeout(self.handshake_timeout)
            conn.sendall(protocol.pack_frame(protocol.OP_CHALLENGE, nonce))
            hdr, payload = protocol.recv_frame(conn, deadline, max_len=protocol.PROOF_SIZE)
            if hdr.op != protocol.OP_PROOF or len(payload) != protocol.PROOF_SIZE:
                raise protocol.ProtocolError(
                    protocol.ERR_MALFORMED,
                    f"expected PROOF (op {protocol.OP_PROOF}, {protocol.PROOF_SIZE} bytes) answering the "
                    f"CHALLENGE, got op {hdr.op} with {len(payload)} bytes")
        except protocol.Truncated:
            self._refuse_count("auth")
            self.log.warn("client closed the connection at the authentication challenge (no token set on the "
                          "client? set GPUWIRE_TOKEN or GPUWIRE_TOKEN_FILE)", session=sid, peer=peer)
            return False
        except protocol.ProtocolError as e:
            self._refuse_count("auth")
            self.log.warn(f"authentication refused: {e.message}", session=sid, peer=peer)
            self._send_error(conn, e.code, e.message)
            return False
        except socket.timeout:
            self._refuse_count("auth")
            msg = f"no authentication PROOF within {self.handshake_timeout:g} s"
            self.log.warn(f"authentication refused: {msg}", session=sid, peer=peer)
            self._send_error(conn, protocol.ERR_REFUSED, msg)
            return False
        except OSError as e:
            self.log.warn(f"authentication failed: {e}", session=sid, peer=peer)
            return False
        try:
            ok, token_id, reason = self.tokens.verify(nonce, payload)
        except AuthError as e:
            self.log.error(f"cannot check tokens: {e}", session=sid, peer=peer)
            self._send_error(conn, protocol.ERR_REFUSED, "gpuwire server cannot check tokens right now "
                                                         "(its tokens file is unreadable; see the server log)")
            return False
        if not ok:
            self._count("auth_failed")
            self._refuse_count("auth")
            self.log.warn(f"authentication failed: {reason}", session=sid, peer=peer, token=_token(token_id))
            self._send_error(conn, protocol.ERR_REFUSED,
                             "authentication failed: this token is not valid on this gpuwire server (unknown, "
                             "revoked or wrong secret); `gpuwire token create` on the server issues one")
            return False
        self._count("auth_ok")
        sess.token = token_id
        self.log.info("authenticated", session=sid, peer=peer, token=token_id, token_name=_token(reason or "-"))
        return True

    # --- leases -------------------------------------------------------------

    def _client_gone(self, conn: socket.socket) -> bool:
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
            lease = self.leases.request(ext.exclusive, ext.gpu, ext.mem_cap, sess.describe(), sid)
        except LeaseRefused as e:
            self._refuse_count("lease")
            self.log.warn(f"lease refused: {e}", session=sid, peer=peer)
            self._send_error(conn, protocol.ERR_REFUSED, f"gpuwire server refused the lease: {e}")
            return None
        sess.lease = lease
        what = f"{'an exclusive' if ext.exclusive else 'a shared'} lease on {lease.describe_gpus(self.leases.gpu_count)}"
        if lease.granted is None:
            pos = self.leases.position(lease)
            if ext.no_wait and pos is not None:
                self.leases.release(lease, refused=True)
                self._refuse_count("lease_busy")
                self.log.info(f"lease refused without waiting: held by {pos.holder}", session=sid, peer=peer,
                              lease=mode)
                self._send_error(conn, protocol.ERR_REFUSED,
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
            if self._stop.is_set():
                self.leases.release(lease)
                self._send_error(conn, protocol.ERR_REFUSED, "gpuwire server is shutting down")
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
                next_note = time.monotonic() + self.queue_interval
        return True

    # --- status probe -------------------------------------------------------

    def _status_probe(self, conn: socket.socket, sess: Session) -> None:
        """Answer a status probe: one STATUS frame of JSON, then echo frames
        (request: u32 bytes wanted back + any filler; reply: that many zero bytes)
        so the client can time round trips and throughput. No worker starts."""
        sess.state = "probe"
        self._count("probes")
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
                if hdr.op != protocol.OP_STATUS or len(payload) < 4:
                    raise protocol.ProtocolError(protocol.ERR_MALFORMED,
                                                 f"a status probe sends STATUS frames, got op {hdr.op}")
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
            self._send_error(conn, e.code, e.message)
        except (socket.timeout, OSError):
            return

    # --- sessions with a worker ---------------------------------------------

    def _worker_env(self, lease: Lease | None, hello: protocol.Hello) -> dict[str, str] | None:
        """The worker's environment: a lease on one GPU of several shows the
        client only that GPU (as its device 0); the client's own
        CUDA_VISIBLE_DEVICES / CUDA_DEVICE_ORDER narrow that further (visible.py)."""
        return visible.worker_env(dict(os.environ), lease.gpus if lease is not None else None,
                                  self.leases.gpu_count, dict(hello.ext.env))

    def _run_session(self, conn: socket.socket, sid: int, peer: str, hello: protocol.Hello,
                     sess: Session | None = None) -> None:
        sess = sess or Session(sid, peer, hello=hello)
        client = f"{peer} pid={hello.pid} host={_token(hello.host)} prog={_token(hello.prog)}"
        conn.settimeout(None)  # the worker gets a blocking socket
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        # A TLS session's worker gets one end of a socket pair; a relay carries its bytes
        # through TLS (tls.py). A plaintext session's worker owns the TCP socket itself.
        secured = isinstance(conn, tls.TLSConn)
        relay_end, worker_end = tls.socket_pair() if secured else (None, None)
        fd = worker_end.fileno() if worker_end is not None else conn.fileno()
        cmd = self.worker_cmd + ["--fd", str(fd), "--driver", str(self.driver.path), "--nvml", str(self.nvml_path),
                                 "--session", str(sid), "--api-digest", str(hello.api_digest), "--client", client,
                                 "--stall-timeout", f"{self.client_stall_timeout:g}", "--server-pid", str(os.getpid())]
        # Lanes (extra connections for copy bytes) reach the worker over a Unix socket;
        # only for plaintext GPU sessions: a lane bypasses the TLS relay.
        lane_chan = lane_end = None
        if self.lanes > 0 and not secured and not hello.ext.nvml_only:
            lane_chan, lane_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            lane_chan.setblocking(False)  # a worker that stops taking lanes must not stall this server
            cmd += ["--lane-fd", str(lane_end.fileno()), "--lanes", str(self.lanes)]
        lease = sess.lease
        if lease is not None and lease.mem_cap:
            cmd += ["--mem-cap", str(lease.mem_cap)]
        if self.cache_dir is not None:
            cmd += ["--cache-dir", str(self.cache_dir), "--cache-max-bytes", str(self.cache_max_bytes)]
        env = self._worker_env(lease, hello)
        if self.cache_dir is not None:  # always set: an inherited value must not pick another tenant's folder
            env = dict(os.environ if env is None else env)
            env[content_cache.SCOPE_ENV] = content_cache.scope_dir(sess.token if self.cache_scope == "tenant"
                                                                   else None)
        block = session_stats.create(sid)  # the worker's counters, for status, metrics and top
        fds: tuple[int, ...] = (fd,) + ((lane_end.fileno(),) if lane_end is not None else ())
        if block is not None:
            env = dict(os.environ if env is None else env)
            env[session_stats.ENV] = str(block.fd)
            fds += (block.fd,)
        with self._lock:
            if self._stop.is_set():
                proc = None
            else:
                try:
                    proc = subprocess.Popen(cmd, pass_fds=fds, stdin=subprocess.DEVNULL,
                                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                            start_new_session=True, env=env)
                except OSError as e:
                    for end in (relay_end, worker_end, block, lane_chan, lane_end):
                        if end is not None:
                            end.close()
                    self.log.error(f"could not start worker: {e}", session=sid, peer=peer)
                    self._send_error(conn, protocol.ERR_DRIVER, f"gpuwire server could not start its worker: {e}")
                    self.refused["worker"] = self.refused.get("worker", 0) + 1
                    return
                self._workers[sid] = proc
                self.counters["sessions"] += 1
        if block is not None:
            block.close_fd()  # the worker has its copy; the mapping stays
            sess.stats = block
        if lane_end is not None:
            lane_end.close()  # the worker has its copy
        if proc is None:
            for end in (relay_end, worker_end, lane_chan):
                if end is not None:
                    end.close()
            self._send_error(conn, protocol.ERR_REFUSED, "gpuwire server is shutting down")
            return
        try:
            sess.watch = conn.dup()  # same kernel socket: TCP_INFO tells its traffic (tcpinfo.py)
        except OSError:
            sess.watch = None
        relay = None
        if secured:
            assert relay_end is not None and worker_end is not None
            worker_end.close()  # the worker has its copy
            relay = tls.Relay(conn, relay_end, name=f"gpuwire-tls-{sid}",
                              on_error=lambda text: self.log.warn(text, session=sid)).start()
        else:
            conn.close()  # the worker owns the connection now
        sess.state = "active"
        sess.worker_pid = proc.pid
        sess.lane_chan = lane_chan
        started = time.monotonic()
        self.log.info("session start", session=sid, peer=peer, pid=hello.pid, host=_token(hello.host),
                      prog=_token(hello.prog), api_digest=f"0x{hello.api_digest:08x}", worker_pid=proc.pid,
                      lease=lease.mode if lease else None,
                      gpus=",".join(map(str, sorted(lease.gpus))) if lease else None,
                      mem_cap=(lease.mem_cap or None) if lease else None)
        try:
            assert proc.stdout is not None
            while True:
                raw = proc.stdout.readline(8192)  # bounded: a line without end cannot grow memory
                if not raw:
                    break
                self._relay(sid, raw)
        finally:
            code = proc.wait()
            with self._lock:  # no lane is handed over to a closed channel (_hand_over_lane)
                if sess.lane_chan is not None:
                    sess.lane_chan.close()
                    sess.lane_chan = None
            if relay is not None:
                relay.join(WORKER_STOP_GRACE)  # the worker's last bytes reach the client
            info = tcpinfo.read(sess.watch) if sess.watch is not None else None
            if sess.watch is not None:
                try:
                    sess.watch.close()  # the last reference: the client sees the connection close
                except OSError:
                    pass
                sess.watch = None
            final = sess.stats.read() if sess.stats is not None else None
            if sess.stats is not None:
                sess.stats, block = None, sess.stats
                block.close()
            with self._lock:
                self._workers.pop(sid, None)
                if final:
                    self.counters["calls_ended"] += final["requests"]
                    self.counters["round_trips_ended"] += final["replies"]
                for k, v in (sess.cache or {}).items():
                    self.cache_ended[k] = self.cache_ended.get(k, 0) + v
                sess.cache = None  # now in cache_ended: counted once
                bytes_in, bytes_out = _traffic(sess, info, final)
                if bytes_in is not None:
                    self.counters["bytes_sent_ended"] += bytes_out
                    self.counters["bytes_received_ended"] += bytes_in
            level = "INFO" if code == 0 else "WARN"
            self.log.log(level, "session end", session=sid, status=describe_status(code),
                         seconds=f"{time.monotonic() - started:.3f}", bytes_in=bytes_in, bytes_out=bytes_out)

    def _idle_reaper(self) -> None:
        """End sessions whose connection carried no data either way for
        lease_idle_timeout seconds (as TCP_INFO sees it)."""
        while not self._stop.wait(1.0):
            with self._lock:
                sessions = [s for s in self._sessions.values() if s.state == "active" and s.watch is not None]
            for s in sessions:
                watch = s.watch
                info = tcpinfo.read(watch) if watch is not None else None
                if info is None or info.idle_s < self.lease_idle_timeout:
                    continue
                block = s.stats
                if block is not None and s.lanes_open:
                    # bytes on lanes do not show on the session's socket; the worker counts them, both ways
                    work = block.read() or {}
                    seen = work.get("bytes_in", 0) + work.get("bytes_out", 0)
                    now = time.monotonic()
                    if seen != s.lane_bytes_seen:
                        s.lane_bytes_seen, s.lane_active_at = seen, now
                    if now - s.lane_active_at < self.lease_idle_timeout:
                        continue
                if block is not None and session_stats.busy_seconds(block.read()) is not None:
                    continue  # a call is running on the GPU: the client waits for it, it is not idle
                with self._lock:
                    proc = self._workers.get(s.id)
                if proc is None or proc.poll() is not None:
                    continue
                self._count("idle_ended")
                self.log.warn(f"ending idle session: no traffic for {info.idle_s:.0f} s "
                              f"(lease idle timeout {self.lease_idle_timeout:g} s)", session=s.id)
                try:
                    proc.terminate()
                except OSError:
                    pass
                threading.Thread(target=self._kill_later, args=(proc,), daemon=True).start()

    @staticmethod
    def _kill_later(proc: subprocess.Popen) -> None:
        try:
            proc.wait(WORKER_STOP_GRACE)
        except subprocess.TimeoutExpired:
            proc.kill()

    # --- what status, metrics and the dashboard show -------------------------

    def snapshot(self, logs: int = 0) -> dict:
        """The server's state as JSON-ready data (status probe, /status.json, metrics)."""
        from gpuwire import metrics

        now = time.time()
        with self._lock:
            sessions = list(self._sessions.values())
            counters = dict(self.counters)
            refused = dict(self.refused)
        rows = []
        live_sent = live_recv = live_calls = live_round_trips = 0
        rate_sum = [0.0, 0.0, 0.0]  # calls, bytes in, bytes out per second, over the live sessions
        for s in sorted(sessions, key=lambda x: x.id):
            if s.state == "lane":
                continue  # a lane connection on its way to its session's worker
            h = s.hello
            row = {"id": s.id, "peer": s.peer, "state": s.state, "age_s": round(now - s.started, 3),
                   "host": clean(h.host, 255) if h else None, "pid": h.pid if h else None,
                   "prog": clean(h.prog, 255) if h else None, "token": s.token, "worker_pid": s.worker_pid,
                   "lease": s.lease.mode if s.lease else None,
                   "gpus": sorted(s.lease.gpus) if s.lease else None,
                   "mem_cap": s.lease.mem_cap if s.lease else None, "lanes": s.lanes_open}
            watch = s.watch
            info = tcpinfo.read(watch) if watch is not None else None
            block = s.stats
            work = block.read() if block is not None else None
            if info is not None:
                bytes_in, bytes_out = _traffic(s, info, work)
                row.update(bytes_in=bytes_in, bytes_out=bytes_out, rtt_s=info.rtt_s, idle_s=round(info.idle_s, 3))
                live_sent += bytes_out
                live_recv += bytes_in
            if work is not None:  # the worker's own counters (session_stats.py)
                row.update(calls=work["requests"], round_trips=work["replies"], call_bytes_in=work["bytes_in"],
                           call_bytes_out=work["bytes_out"], busy_s=session_stats.busy_seconds(work))
                live_calls += work["requests"]
                live_round_trips += work["replies"]
            if work is not None or info is not None:
                rates = s.rates.update((row.get("calls", 0), row.get("bytes_in", 0), row.get("bytes_out", 0)))
                if rates is not None:
                    row.update(calls_per_s=round(rates[0], 1), bytes_in_per_s=round(rates[1]),
                               bytes_out_per_s=round(rates[2]))
                    rate_sum = [a + b for a, b in zip(rate_sum, rates)]
            if s.tls:
                row["tls"] = dict(s.tls)
            if s.cache:
                row["cache"] = dict(s.cache)
            rows.append(row)
        drv = self.driver
        gpus = metrics.gpu_info(drv)
        by_pid: dict[int, int] = {}
        for g in gpus:
            for proc in g.get("processes", []):
                by_pid[proc["pid"]] = by_pid.get(proc["pid"], 0) + proc["memory_used"]
        for row in rows:
            if row["worker_pid"] in by_pid:
                row["gpu_memory"] = by_pid[row["worker_pid"]]
        snap = {
            "server": {"version": __version__, "proto_version": protocol.PROTO_VERSION, "pid": os.getpid(),
                       "address": self.address_text if self.address else None, "started": self.started,
                       "uptime_s": round(now - self.started, 3), "auth": self.tokens is not None,
                       "max_sessions": self.max_sessions, "lease_idle_timeout_s": self.lease_idle_timeout,
                       "tls": "off" if self.tls is None else "required" if self.tls.required else "optional",
                       "tls_client_certs": bool(self.tls and self.tls.client_certs)},
            "driver": {"kind": drv.kind, "desc": drv.desc, "path": str(drv.path), "version": drv.driver_version,
                       "device_count": drv.device_count, "device_name": drv.device_name},
            "gpus": gpus,
            "leases": self.leases.snapshot(),
            "sessions": rows,
            "totals": {"connections": counters["connections"], "sessions_started": counters["sessions"],
                       "sessions_active": sum(1 for s in sessions if s.state == "active"),
                       "queued": sum(1 for s in sessions if s.state == "queued"),
                       "probes": counters["probes"], "auth_ok": counters["auth_ok"],
                       "auth_failed": counters["auth_failed"], "idle_ended": counters["idle_ended"],
                       "refused": refused,
                       "bytes_in": counters["bytes_received_ended"] + live_recv,
                       "bytes_out": counters["bytes_sent_ended"] + live_sent,
                       "calls": counters["calls_ended"] + live_calls,
                       "round_trips": counters["round_trips_ended"] + live_round_trips,
                       "tls_sessions": counters["tls_sessions"], "lanes": counters["lanes"],
                       "calls_per_s": round(rate_sum[0], 1), "bytes_in_per_s": round(rate_sum[1]),
                       "bytes_out_per_s": round(rate_sum[2])},
        }
        snap["cache"] = self._cache_snapshot(rows)
        if logs and self.log_tail is not None:
            snap["logs"] = self.log_tail(logs)
        return snap

    def _cache_snapshot(self, rows: list[dict]) -> dict:
        """The content cache: its folder, and hits/misses/bytes avoided over
        every session (ended ones plus the live ones' latest counters)."""
        with self._lock:
            total = dict(self.cache_ended)
        for row in rows:
            for k, v in row.get("cache", {}).items():
                total[k] = total.get(k, 0) + v
        out = {"dir": str(self.cache_dir) if self.cache_dir is not None else None,
               "max_bytes": self.cache_max_bytes, "totals": {k: total.get(k, 0) for k in content_cache.STAT_FIELDS}}
        disk = self.cache_disk.get() if self.cache_disk is not None else None
        if disk is not None:
            out.update(entries=disk["entries"], bytes=disk["bytes"])
        return out

    def _relay(self, sid: int, raw: bytes) -> None:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        line = _WORKER_PREFIX.sub("", line, count=1)  # the server's own fields already say this
        if not line.strip():
            return
        figures = content_cache.parse_stats_line(line)
        if figures is not None:  # the worker's cache counters (cumulative for its session): metrics, not log
            with self._lock:
                sess = self._sessions.get(sid)
                if sess is not None:
                    sess.cache = figures
            self.log.log("DEBUG", line, session=sid, src="worker")
            return
        level = "INFO"
        for word in line.split()[:3]:
            if word.upper().rstrip(":") in _LEVEL_WORDS:
                level = _LEVEL_WORDS[word.upper().rstrip(":")]
                break
        self.log.log(level, line, session=sid, src="worker")


def orphaned_workers(worker_name: str = "gpuwire-worker") -> list[tuple[int, int]]:
    """(pid, server pid) of gpuwire workers whose server is no longer their parent:
    left behind by a server that was SIGKILLed before workers died with their
    server (--server-pid and the parent-death signal), or by an older gpuwire."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.stat().st_uid != os.getuid():
                continue  # another user's server and workers are theirs to mind
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            if Path(argv[0].decode(errors="replace")).name != worker_name or b"--fd" not in argv:
                continue
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or not ours to read
        server_pid = 0
        if b"--server-pid" in argv:
            try:
                server_pid = int(argv[argv.index(b"--server-pid") + 1])
            except (ValueError, IndexError):
                pass
        elif ppid != 1:
            continue  # an older worker that does not name its server: orphaned only once init adopted it
        if ppid != server_pid:
            found.append((int(entry.name), server_pid))
    return found


def _end_orphans(log: Logger) -> None:
    """At start: a worker still serving a client of a dead server holds GPU memory and
    a lease nobody can see; end it (its client sees the connection close)."""
    for pid, server_pid in orphaned_workers(paths.WORKER):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError as e:
            log.warn(f"cannot end orphaned worker {pid}: {e.strerror or e}", worker_pid=pid)
            continue
        log.warn(f"ended an orphaned worker whose server (pid {server_pid or '?'}) is gone", worker_pid=pid)


def _unwritable(folder: Path) -> str | None:
    """Why the server could not store files in folder (created if missing); None if it can."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".gpuwire-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        return e.strerror or str(e)
    return None


def _keepalive(conn: socket.socket, dead_after: float, stall_after: float) -> None:
    """Keepalive probes that end an idle connection whose peer has been silent for
    about dead_after seconds (the first probe after a third of it, six more over
    the rest), and a user timeout for data the peer leaves unacknowledged. The
    kernel applies the latter to a closed window too, i.e. to a live client that
    reads nothing, so it leaves room for the worker's stall check (which notices
    within 1.25 stall timeouts and says why) to act first (0: none). The worker
    inherits the socket: both hold for the whole session, lanes included."""
    idle, interval = max(1, round(dead_after / 3)), max(1, round(dead_after / 9))
    user_timeout = int(max(dead_after, 1.5 * stall_after) * 1000) if stall_after > 0 else 0
    opts = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
    for name, value in (("TCP_KEEPIDLE", idle), ("TCP_KEEPINTVL", interval), ("TCP_KEEPCNT", 6),
                        ("TCP_USER_TIMEOUT", user_timeout)):
        if hasattr(socket, name):
            opts.append((socket.IPPROTO_TCP, getattr(socket, name), value))
    for level, opt, value in opts:
        try:
            conn.setsockopt(level, opt, value)
        except OSError:
            pass  # not a TCP socket (tests hand in socket pairs): nothing to keep alive


def _close_now(conn: socket.socket) -> None:
    """Close without lingering in FIN_WAIT for a peer that floods (RST)."""
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        conn.close()
    except OSError:
        pass


def _nvml_path(driver: Driver) -> str:
    """The stand-in NVML beside the stand-in driver; else the NVML beside the
    driver's libcuda (its folder may not be on the loader's path), else by name."""
    if driver.is_standin:
        try:
            return str(paths.standin_nvml())
        except paths.NativeMissing:
            return paths.NVML_LIB
    beside = Path(driver.path).parent / paths.NVML_LIB
    return str(beside) if beside.is_file() else paths.NVML_LIB


def _tls_settings(host: str, loopback: bool, log: Logger, cert: str | None, key: str | None,
                  client_ca: str | None, require_tls: bool, insecure_no_tls: bool
                  ) -> tuple[tls.ServerTLS | None, str | None]:
    """The server's TLS from its settings: (settings or None, error text or None).
    Beyond loopback TLS is required unless --insecure-no-tls; --tls-client-ca
    requires it everywhere (a plaintext client would bypass the certificate check)."""
    if not cert:
        if key or client_ca:
            return None, f"{'--tls-key' if key else '--tls-client-ca'} needs --tls-cert"
        if require_tls:
            return None, "--require-tls needs a certificate: --tls-cert FILE --tls-key FILE"
        if not loopback:
            if not insecure_no_tls:
                return None, (f"listening on {host}, beyond loopback, needs TLS: give the server a certificate "
                              f"(--tls-cert FILE --tls-key FILE; docs/server.md shows how to make a self-signed "
                              f"one), or (trusted networks only) pass --insecure-no-tls")
            log.warn(f"listening on {host}, beyond loopback, WITHOUT TLS (--insecure-no-tls): the call stream, "
                     f"its data and sessions can be read and taken over by anyone on the path")
        return None, None
    try:
        ctx = tls.server_context(cert, key, client_ca)
    except tls.TLSError as e:
        return None, str(e)
    required = bool(require_tls or client_ca or (not loopback and not insecure_no_tls))
    if insecure_no_tls and not loopback and not required:
        log.warn(f"listening on {host}, beyond loopback, and accepting plaintext clients too (--insecure-no-tls): "
                 f"their call streams can be read and taken over by anyone on the path")
    settings = tls.ServerTLS(ctx, required=required, client_certs=bool(client_ca), cert=str(cert))
    log.info(settings.describe(), tls_cert=str(cert), tls_client_ca=client_ca)
    return settings, None


def _traffic(sess: Session, info, work: dict | None) -> tuple[int | None, int | None]:
    """A session's bytes in and out: its socket's (TCP_INFO), or, once lanes
    carry some of them (they do not show on that socket), the worker's own
    count of frame bytes, which includes the lanes', where that is more."""
    if info is None:
        return None, None
    if not sess.lanes_open or not work:
        return info.bytes_received, info.bytes_sent
    return max(info.bytes_received, work["bytes_in"]), max(info.bytes_sent, work["bytes_out"])


def run_server(listen: str, driver_spec: str, log: Logger, max_sessions: int = 256,
               handshake_timeout: float = HANDSHAKE_TIMEOUT, metrics_listen: str | None = None,
               tokens_file: str | None = None, require_auth: bool = False, insecure_no_auth: bool = False,
               lease_idle_timeout: float = 3600.0, queue_interval: float = QUEUE_INTERVAL,
               max_preauth: int = 128, max_preauth_per_peer: int = 16,
               dead_peer_timeout: float = DEAD_PEER_TIMEOUT,
               tls_cert: str | None = None, tls_key: str | None = None, tls_client_ca: str | None = None,
               require_tls: bool = False, insecure_no_tls: bool = False, cache_dir: str | None = None,
               cache_max_bytes: object = None, cache_scope: str = "shared", lanes: int = 3,
               client_stall_timeout: float = 60.0) -> int:
    """`gpuwire server`: resolve the driver, serve until SIGINT/SIGTERM, exit 0."""
    from gpuwire import auth
    from gpuwire import driver as drivers
    from gpuwire import metrics

    ring = metrics.LogRing(log.stream)
    log.stream = ring  # keep recent lines for the dashboard
    try:
        host, _ = address.parse(listen, listen=True, what="--listen")
        if metrics_listen:
            address.parse(metrics_listen, address.DEFAULT_METRICS_PORT, listen=True, what="--metrics")
    except ValueError as e:
        log.error(f"cannot start: {e}")
        return 2
    loopback = auth.is_loopback(host)
    tokens = None
    if require_auth or not loopback:
        if insecure_no_auth and not require_auth:
            log.warn(f"listening on {host}, beyond loopback, WITHOUT authentication (--insecure-no-auth): anyone "
                     f"who can reach this port can run code on its GPUs")
        else:
            tokens = auth.TokenStore(tokens_file or auth.default_state_dir() / auth.TOKENS_FILE)
            try:
                n = len(tokens.entries())
            except auth.AuthError as e:
                log.error(f"cannot start: {e}")
                return 1
            why = "--require-auth" if require_auth else f"listening on {host}, beyond loopback"
            log.info(f"clients must authenticate with a token ({why})", tokens_file=str(tokens.path), tokens=n)
            if n == 0:
                log.error(f"cannot start: clients must authenticate ({why}) but {tokens.path} holds no tokens: "
                          f"create one with `gpuwire token create --tokens-file {tokens.path}`"
                          + ("" if require_auth else ", or listen on 127.0.0.1, or (trusted networks only) "
                                                     "pass --insecure-no-auth"))
                return 1
            warning = tokens.insecure_mode()
            if warning:
                log.warn(warning)
    for flag, path in (("--tls-cert", tls_cert), ("--tls-key", tls_key), ("--tls-client-ca", tls_client_ca)):
        if path and not os.path.exists(path):
            log.error(f"cannot start: {flag} {path}: no such file")
            return 1
    tls_settings, err = _tls_settings(host, loopback, log, tls_cert, tls_key, tls_client_ca, require_tls,
                                      insecure_no_tls)
    if err:
        log.error(f"cannot start: {err}")
        return 1
    try:
        drv = drivers.resolve(driver_spec)
    except (drivers.DriverError, paths.NativeMissing) as e:
        log.error(f"cannot start: {e}")
        return 1
    if drv.is_standin:
        log.warn(drivers.describe(drv), driver="standin", path=str(drv.path))
    else:
        log.info(drivers.describe(drv), driver=drv.kind, path=str(drv.path), devices=drv.device_count,
                 driver_version=drv.driver_version)
    server = Server(listen, drv, log, handshake_timeout=handshake_timeout, max_sessions=max_sessions,
                    max_preauth=max_preauth, max_preauth_per_peer=max_preauth_per_peer,
                    dead_peer_timeout=dead_peer_timeout, tokens=tokens, lease_idle_timeout=lease_idle_timeout, queue_interval=queue_interval,
                    log_tail=ring.tail, tls_settings=tls_settings)
    try:
        server.cache_dir = content_cache.resolve_dir(cache_dir)
        server.cache_max_bytes = content_cache.parse_max_bytes(
            cache_max_bytes if cache_max_bytes is not None else content_cache.DEFAULT_MAX_BYTES)
    except ValueError as e:
        log.error(f"cannot start: cache_max_bytes: {e}")
        return 2
    server.cache_disk = content_cache.DiskFigures(server.cache_dir)
    server.cache_scope = cache_scope
    if not 0 <= lanes <= protocol.LANES_MAX:
        log.error(f"cannot start: lanes must be 0..{protocol.LANES_MAX}, not {lanes}")
        return 2
    server.lanes = lanes
    if not (client_stall_timeout == 0 or 1 <= client_stall_timeout <= 86400):  # NaN fails too
        log.error(f"cannot start: client_stall_timeout must be 0 (never) or 1..86400 seconds, "
                  f"not {client_stall_timeout}")
        return 2
    server.client_stall_timeout = client_stall_timeout
    if server.cache_dir is None:
        log.info("content cache off: every upload crosses the wire")
    elif (why := _unwritable(server.cache_dir)) is not None:
        log.error(f"cannot start: the content cache folder {server.cache_dir} is not usable ({why}); give "
                  f"--cache-dir a folder this user can write, or --cache-dir off")
        return 1
    else:
        log.info("content cache", cache_dir=str(server.cache_dir), cache_max_bytes=server.cache_max_bytes,
                 cache_scope=cache_scope)
    _end_orphans(log)
    try:
        server.bind()
    except (OSError, ValueError) as e:
        log.error(f"cannot listen on {listen}: {e}")
        return 1
    admin = None
    if metrics_listen:
        mhost, mport = parse_address(metrics_listen, address.DEFAULT_METRICS_PORT)
        try:
            admin = metrics.AdminServer(mhost, mport, server.snapshot, log=log).start()
        except OSError as e:
            log.error(f"cannot serve metrics on {metrics_listen}: {e}")
            server.stop()
            return 1
        maddr = format_address(*admin.address)
        log.info(f"admin endpoint on http://{maddr}/metrics and /status.json", metrics=maddr)
        if not auth.is_loopback(mhost):
            log.warn(f"the admin endpoint {maddr} has no authentication and shows clients' hosts and programs")
        if not drv.is_standin and importlib.util.find_spec("pynvml") is None:
            log.info("GPU figures (memory, utilization, temperature) need the pynvml module: "
                     "pip install 'gpuwire[metrics]' (nvidia-ml-py)")

    def on_signal(signum, _frame):
        server.request_stop(f"received {signal.Signals(signum).name}, shutting down")

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        server.serve_forever()
    finally:
        if admin is not None:
            admin.stop()
        server.stop()
    log.info("server exited")
    return 0
