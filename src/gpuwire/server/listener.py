"""The listener: the listening socket and its accept loop, one thread per
connection, TCP keepalive, TLS sniffing and the TLS handshake, the HELLO
handshake, and handing a lane connection to the worker of the session it
names. A client's HELLO goes on to admission.py. Also the server's TLS
settings from its flags (server_tls)."""

from __future__ import annotations

import socket
import struct
import threading
import time

from gpuwire import address, protocol, tls
from gpuwire.config import ServerConfig
from gpuwire.log import Logger
from gpuwire.server.admission import Admission
from gpuwire.server.state import Registry, Session, client_text, send_error


class Listener:
    def __init__(self, config: ServerConfig, registry: Registry, admission: Admission, log: Logger,
                 tls_settings: tls.ServerTLS | None):
        self.config = config
        self.registry = registry
        self.admission = admission
        self.log = log
        self.tls = tls_settings               # None: plaintext only
        self.host, self.port = address.parse(config.listen, listen=True)
        self.address: tuple[str, int] | None = None
        self._sock: socket.socket | None = None

    # --- the listening socket ------------------------------------------------

    def bind(self) -> tuple[str, int]:
        infos = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
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
    def bound(self) -> bool:
        return self._sock is not None

    def accept_loop(self) -> None:
        """Accept until the server stops; each connection gets its own thread."""
        assert self._sock is not None
        stopping = self.registry.stopping
        while not stopping.is_set():
            try:
                conn, peer = self._sock.accept()
            except socket.timeout:
                continue
            except OSError as e:
                if stopping.is_set():
                    break
                self.log.error(f"accept failed: {e}")
                time.sleep(0.1)  # e.g. out of file descriptors: do not spin
                continue
            self._accept(conn, peer)

    def close(self) -> None:
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

    # --- one connection --------------------------------------------------------

    def _accept(self, conn: socket.socket, peer: tuple) -> None:
        peer_text = address.format(peer[0], peer[1])
        sess = self.admission.open(peer_text, peer[0])
        if sess is None:
            close_now(conn)
            return
        keepalive(conn, self.config.dead_peer_timeout, self.config.client_stall_timeout)
        t = threading.Thread(target=self._connection, args=(conn, sess), daemon=True,
                             name=f"gpuwire-session-{sess.id}")
        t.start()

    def _connection(self, conn: socket.socket, sess: Session) -> None:
        sid, peer = sess.id, sess.peer
        try:
            secured = self._tls_accept(conn, sess)
            if secured is None:
                return
            conn = secured  # a TLSConn for TLS clients, else the socket itself
            hello = self._handshake(conn, sid, peer)
            if hello is None:
                self.registry.count_refused("handshake")
                return
            if isinstance(hello, protocol.LaneHello):
                sess.state = "lane"
                self._hand_over_lane(conn, sess, hello)
                return
            sess.hello = hello
            self.admission.serve(conn, sess)
        except Exception as e:  # the server must outlive any single connection
            self.log.error(f"internal error in connection thread: {type(e).__name__}: {e}", session=sid, peer=peer)
        finally:
            try:
                conn.close()
            except OSError:
                pass
            self.admission.close(sess)

    def _tls_accept(self, conn: socket.socket, sess: Session):
        """What the control plane talks through: conn itself (plaintext, when
        allowed) or a tls.TLSConn after the TLS handshake. None: refused (logged)."""
        sid, peer, timeout, reg = sess.id, sess.peer, self.config.handshake_timeout, self.registry
        kind = tls.sniff(conn, timeout)
        if kind == "timeout":
            msg = f"no complete HELLO within {timeout:g} s"
            reg.count_refused("handshake")
            self.log.warn(f"handshake refused: {msg}", session=sid, peer=peer)
            if self.tls is None or not self.tls.required:
                send_error(conn, protocol.ERR_MALFORMED, msg)
            return None
        if kind == "tls":
            if self.tls is None:
                reg.count_refused("tls")
                self.log.warn("refused a client that started a TLS handshake: this server has no certificate "
                              "(start it with --tls-cert and --tls-key, or have the client use --no-tls, "
                              "GPUWIRE_TLS=0)", session=sid, peer=peer)
                return None
            try:
                secured = tls.TLSConn.accept(conn, self.tls.context, timeout)
            except tls.TLSError as e:
                reg.count_refused("tls")
                self.log.warn(f"TLS handshake refused: {e}", session=sid, peer=peer)
                return None
            except socket.timeout:
                reg.count_refused("tls")
                self.log.warn(f"TLS handshake refused: not finished within {timeout:g} s", session=sid, peer=peer)
                return None
            except OSError as e:
                self.log.warn(f"TLS handshake failed: {e}", session=sid, peer=peer)
                return None
            sess.tls = secured.info()
            reg.count("tls_sessions")
            self.log.debug("TLS established", session=sid, peer=peer, **{k: client_text(str(v)) for k, v in
                                                                          sess.tls.items()})
            return secured
        if kind == "plain" and self.tls is not None and self.tls.required:
            reg.count_refused("tls")
            self.log.warn("refused a plaintext client: this server requires TLS", session=sid, peer=peer)
            send_error(conn, protocol.ERR_REFUSED,
                       "this gpuwire server requires TLS: connect with TLS (gpuwire run --tls, or "
                       "GPUWIRE_TLS=1; --tls-ca or GPUWIRE_TLS_CA names the CA of the server's certificate)")
            return None
        return conn  # plaintext, or closed (the handshake says so)

    def _handshake(self, conn: socket.socket, sid: int, peer: str) -> protocol.Hello | protocol.LaneHello | None:
        timeout = self.config.handshake_timeout
        deadline = time.monotonic() + timeout
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
            send_error(conn, e.code, e.message, seq)
            return None
        except socket.timeout:
            msg = f"no complete HELLO within {timeout:g} s"
            self.log.warn(f"handshake refused: {msg}", session=sid, peer=peer)
            send_error(conn, protocol.ERR_MALFORMED, msg, seq)
            return None
        except OSError as e:
            self.log.warn(f"handshake failed: {e}", session=sid, peer=peer)
            return None

    def _hand_over_lane(self, conn, sess: Session, lane: protocol.LaneHello) -> None:
        """A lane connection goes, with its hello, to the worker of the session
        it names; that worker checks the token (a wrong one is closed there)."""
        reg = self.registry

        def refuse(why: str) -> None:
            reg.count_refused("lane")
            self.log.warn(f"refused a lane connection: {why}", session=sess.id, peer=sess.peer,
                          lane_session=lane.session, lane=lane.lane)
            send_error(conn, protocol.ERR_REFUSED, f"gpuwire server refused the lane: {why}")

        if isinstance(conn, tls.TLSConn):
            refuse("lanes are plaintext only (a TLS session is granted none)")
            return
        conn.settimeout(None)  # the worker gets a blocking socket (the flag is shared with its copy)
        with reg.lock:  # the session's end closes its channel under the same lock
            target = reg.sessions.get(lane.session)
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
        reg.count("lanes")
        self.log.debug("lane handed over", session=lane.session, lane=lane.lane, peer=sess.peer)


def keepalive(conn: socket.socket, dead_after: float, stall_after: float) -> None:
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


def close_now(conn: socket.socket) -> None:
    """Close without lingering in FIN_WAIT for a peer that floods (RST)."""
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        conn.close()
    except OSError:
        pass


def server_tls(host: str, loopback: bool, log: Logger, cert: str | None, key: str | None,
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
