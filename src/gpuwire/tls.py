"""TLS for gpuwire connections, with the standard library's ssl module only.

Server side: the Python server terminates TLS. It looks at a connection's
first bytes (a TLS ClientHello starts 16 03 0x; a gpuwire HELLO frame never
does), runs the TLS handshake on an ssl.SSLObject over memory buffers
(TLSConn), and speaks the control plane (HELLO, CHALLENGE/PROOF, QUEUED,
STATUS) through it. The native worker then gets one end of a Unix socket pair
instead of the TCP socket, and a Relay (two threads, one per direction) moves
bytes between that pair and the TLS connection. Plaintext sessions are not
touched: their worker owns the TCP socket as before, so TLS costs them nothing.

Why an SSLObject rather than an SSLSocket: OpenSSL does not allow one SSL
object to be used by two threads at once, and the relay reads and writes at
the same time. With memory buffers each direction does its socket I/O on its
own and holds a lock only while OpenSSL encrypts or decrypts.

Kernel TLS (handing the worker a socket the kernel encrypts) would remove the
relay; it needs the kernel's tls module and Python 3.12's ssl.OP_ENABLE_KTLS
with an OpenSSL built for it, so it is not used (docs/server.md, "TLS").

Client side (status probe, `gpuwire top --server`): client_context() and
wrap_client(); the C client library does the same with OpenSSL loaded at run
time (native/client/tls.c). Settings come from the environment (client_settings).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import threading
import time
from dataclasses import dataclass

RELAY_CHUNK = 1 << 20       # bytes read from either side per system call
PAIR_BUFFER = 4 << 20       # socket pair buffers (the kernel may cap them)
PEEK_BYTES = 3
MODES = ("auto", "1", "0")


class TLSError(Exception):
    pass


# --- server ---------------------------------------------------------------------


@dataclass
class ServerTLS:
    """The server's TLS settings."""
    context: ssl.SSLContext
    required: bool              # refuse plaintext clients
    client_certs: bool          # clients must present a certificate signed by the client CA
    cert: str = ""

    def describe(self) -> str:
        return (f"TLS {'required' if self.required else 'optional (plaintext accepted on loopback)'}"
                f"{', client certificates required' if self.client_certs else ''}")


def server_context(cert: str, key: str | None = None, client_ca: str | None = None) -> ssl.SSLContext:
    """A server context (TLS 1.2 or newer). Raises TLSError with a readable reason."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key or None)
    except FileNotFoundError as e:
        raise TLSError(f"cannot read the TLS certificate or key: {e.filename}: {e.strerror}") from e
    except (ssl.SSLError, OSError) as e:
        raise TLSError(f"cannot use TLS certificate {cert}" + (f" with key {key}" if key else "")
                       + f": {getattr(e, 'reason', None) or e} (PEM files expected: the certificate chain, "
                         f"and the private key unless it is in the same file)") from e
    if client_ca:
        try:
            ctx.load_verify_locations(cafile=client_ca) if not os.path.isdir(client_ca) \
                else ctx.load_verify_locations(capath=client_ca)
        except (ssl.SSLError, OSError) as e:
            raise TLSError(f"cannot use {client_ca} as the client CA: {getattr(e, 'reason', None) or e}") from e
        ctx.verify_mode = ssl.CERT_REQUIRED
    # Nothing after the handshake but the call stream: no session tickets (nothing to resume;
    # a ticket arriving later would also be a record the client's reader has to skip).
    try:
        ctx.num_tickets = 0
    except (AttributeError, ValueError):
        pass
    return ctx


def sniff(sock: socket.socket, timeout: float) -> str:
    """What the client speaks, from its first bytes without consuming them:
    "tls", "plain", "closed" or "timeout".

    Once a first byte 0x16 has come, the kernel holds the wait for the rest
    (SO_RCVLOWAT), so a client that sends that one byte and stalls costs a
    sleeping thread, not a poll loop (250 such connections once kept 1.4 cores
    busy)."""
    deadline = time.monotonic() + timeout
    lowat = False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return "timeout"
            sock.settimeout(left)
            try:
                head = sock.recv(PEEK_BYTES, socket.MSG_PEEK)
            except socket.timeout:
                return "timeout"
            except OSError:
                return "closed"
            if not head:
                return "closed"
            if head[0] != 0x16 or len(head) >= 2 and head[1] != 0x03:
                return "plain"
            if len(head) >= PEEK_BYTES:
                # a HELLO frame whose length byte happens to be 0x16 has 0 in its third byte
                return "tls" if 1 <= head[2] <= 4 else "plain"
            if lowat:
                return "plain"  # fewer bytes despite the mark: the peer closed after them
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, PEEK_BYTES)
                lowat = True
            except OSError:
                time.sleep(0.05)  # no low-water mark here: wait a little for the rest
    finally:
        if lowat:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)  # the worker inherits this socket
            except OSError:
                pass


class TLSConn:
    """A server-side TLS connection with enough of the socket interface for
    the control plane: recv (MSG_PEEK answers from the TCP socket: b"" means
    the client closed), sendall, settimeout, setsockopt, fileno, dup, close."""

    def __init__(self, raw: socket.socket, obj: ssl.SSLObject, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO):
        self.raw, self.obj, self.incoming, self.outgoing = raw, obj, incoming, outgoing
        self.relay: Relay | None = None
        self.close_wanted = False

    @classmethod
    def accept(cls, raw: socket.socket, ctx: ssl.SSLContext, timeout: float) -> "TLSConn":
        """Run the server side of the handshake. Raises TLSError (after sending
        the client OpenSSL's alert, if it has one) or socket.timeout."""
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(incoming, outgoing, server_side=True)
        conn = cls(raw, obj, incoming, outgoing)
        deadline = time.monotonic() + timeout
        while True:
            try:
                obj.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                done = False
            except ssl.SSLError as e:
                conn._push(deadline)  # the alert, so the client can say why
                raise TLSError(describe_error(e)) from e
            conn._push(deadline)
            if done:
                return conn
            left = deadline - time.monotonic()
            if left <= 0:
                raise socket.timeout("TLS handshake timed out")
            raw.settimeout(left)
            chunk = raw.recv(65536)
            if not chunk:
                raise TLSError("the client closed the connection during the TLS handshake (does it trust this "
                               "server's certificate?)")
            incoming.write(chunk)

    def _push(self, deadline: float | None = None) -> None:
        data = self.outgoing.read()
        if data:
            if deadline is not None:
                self.raw.settimeout(max(0.01, deadline - time.monotonic()))
            self.raw.sendall(data)

    def info(self) -> dict:
        cipher = self.obj.cipher()
        out = {"version": self.obj.version(), "cipher": cipher[0] if cipher else None}
        cert = self.obj.getpeercert()
        if cert:
            subject = dict(x[0] for x in cert.get("subject", ()) if x)
            out["client_cert"] = subject.get("commonName") or str(cert.get("subject"))
        return out

    # --- the socket interface the control plane uses ---

    def recv(self, n: int, flags: int = 0) -> bytes:
        if flags & socket.MSG_PEEK:
            return self.raw.recv(n, socket.MSG_PEEK)  # raw bytes: only emptiness (closed) is meaningful
        while True:
            try:
                data = self.obj.read(n)
                if data:
                    return data
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLZeroReturnError:
                return b""
            except ssl.SSLError as e:
                raise OSError(f"TLS: {describe_error(e)}") from e
            chunk = self.raw.recv(65536)
            if not chunk:
                return b""
            self.incoming.write(chunk)

    def sendall(self, data: bytes) -> None:
        try:
            self.obj.write(data)
        except ssl.SSLError as e:
            raise OSError(f"TLS: {describe_error(e)}") from e
        self._push()

    def settimeout(self, t: float | None) -> None:
        self.raw.settimeout(t)

    def gettimeout(self) -> float | None:
        return self.raw.gettimeout()

    def setsockopt(self, *args) -> None:
        self.raw.setsockopt(*args)

    def fileno(self) -> int:
        return self.raw.fileno()

    def dup(self) -> socket.socket:
        return self.raw.dup()

    def close(self) -> None:
        """Close now, or, while a relay still runs, when it ends."""
        relay = self.relay
        if relay is not None:
            with relay.end_lock:
                if not relay.done.is_set():
                    self.close_wanted = True
                    return
        self.raw.close()


def describe_error(e: ssl.SSLError) -> str:
    reason = getattr(e, "reason", None) or ""
    text = str(e)
    if "PEER_DID_NOT_RETURN_A_CERTIFICATE" in reason or "peer did not return a certificate" in text:
        return "the client sent no certificate, and this server requires one (--tls-client-ca)"
    if "CERTIFICATE_VERIFY_FAILED" in reason or "certificate verify failed" in text:
        return f"the client's certificate is not signed by the client CA ({e.verify_message if hasattr(e, 'verify_message') else text})"
    if reason in ("TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_BAD_CERTIFICATE", "SSLV3_ALERT_CERTIFICATE_UNKNOWN"):
        return f"the client does not trust this server's certificate ({reason.lower()})"
    return reason.replace("_", " ").lower() or text


def socket_pair() -> tuple[socket.socket, socket.socket]:
    """(relay end, worker end): a Unix stream pair with large buffers."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    for s in (a, b):
        for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            try:
                s.setsockopt(socket.SOL_SOCKET, opt, PAIR_BUFFER)
            except OSError:
                pass
    return a, b


class Relay:
    """Moves a session's bytes between its TLS connection and the worker's
    end of a socket pair, one thread each way, until either side ends."""

    def __init__(self, conn: TLSConn, plain: socket.socket, name: str = "gpuwire-tls", on_error=None):
        self.conn, self.plain, self.name = conn, plain, name
        self.on_error = on_error              # callable(text), for the log
        self.lock = threading.Lock()          # the SSLObject and its buffers
        self.send_lock = threading.Lock()     # the TCP socket's send side; taken before self.lock
        self.bytes_up = 0                     # plaintext bytes client -> worker
        self.bytes_down = 0                   # plaintext bytes worker -> client
        self.done = threading.Event()
        self.end_lock = threading.Lock()
        self._running = 0
        self._threads: list[threading.Thread] = []
        conn.relay = self

    def start(self) -> "Relay":
        self.conn.raw.settimeout(None)
        self.plain.settimeout(None)
        self._running = 2
        for target, tag in ((self._from_client, "up"), (self._to_client, "down")):
            t = threading.Thread(target=target, daemon=True, name=f"{self.name}-{tag}")
            t.start()
            self._threads.append(t)
        return self

    def join(self, timeout: float | None = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def _thread_end(self) -> None:
        with self.end_lock:
            self._running -= 1
            if self._running:
                return
            self.done.set()
            close_raw = self.conn.close_wanted
        for s in (self.plain,) + ((self.conn.raw,) if close_raw else ()):
            try:
                s.close()
            except OSError:
                pass

    def _error(self, text: str) -> None:
        if self.on_error is not None:
            try:
                self.on_error(text)
            except Exception:
                pass

    def _flush_tls(self) -> None:
        """Send whatever OpenSSL has produced (records leave in the order they were made)."""
        with self.send_lock:
            with self.lock:
                data = self.conn.outgoing.read()
            if data:
                self.conn.raw.sendall(data)

    def _from_client(self) -> None:
        obj, incoming, raw, plain = self.conn.obj, self.conn.incoming, self.conn.raw, self.plain
        inbuf = bytearray(RELAY_CHUNK)
        inview = memoryview(inbuf)
        outbuf = bytearray(RELAY_CHUNK)
        outview = memoryview(outbuf)
        try:
            while True:
                # decrypt what has arrived (the handshake may have left some), pass it on
                eof = False
                while True:
                    pos = 0
                    with self.lock:
                        while pos < len(outbuf):
                            try:
                                got = obj.read(len(outbuf) - pos, outview[pos:])
                            except ssl.SSLWantReadError:
                                break
                            except ssl.SSLZeroReturnError:
                                eof = True
                                break
                            if not got:
                                break
                            pos += got
                        pending = self.conn.outgoing.pending
                    if pending:
                        self._flush_tls()
                    if pos:
                        plain.sendall(outview[:pos])
                        self.bytes_up += pos
                    if pos < len(outbuf) or eof:
                        break
                if eof:
                    return
                n = raw.recv_into(inview)
                if not n:
                    return
                with self.lock:
                    incoming.write(inview[:n])
        except ssl.SSLError as e:
            self._error(f"TLS error from the client: {describe_error(e)}")
        except OSError:
            pass  # either side went away: the session ends
        finally:
            try:
                plain.shutdown(socket.SHUT_WR)  # the worker sees the client's end
            except OSError:
                pass
            self._thread_end()

    def _to_client(self) -> None:
        obj, raw, plain = self.conn.obj, self.conn.raw, self.plain
        buf = bytearray(RELAY_CHUNK)
        view = memoryview(buf)
        try:
            while True:
                n = plain.recv_into(view)
                if not n:
                    return
                with self.send_lock:
                    with self.lock:
                        obj.write(view[:n])
                        data = self.conn.outgoing.read()
                    raw.sendall(data)
                self.bytes_down += n
        except ssl.SSLError as e:
            self._error(f"TLS error towards the client: {describe_error(e)}")
        except OSError:
            pass
        finally:
            try:
                raw.shutdown(socket.SHUT_RDWR)  # ends the other direction; the client sees the session end
            except OSError:
                pass
            self._thread_end()


# --- client ---------------------------------------------------------------------


@dataclass
class ClientTLS:
    mode: str = "auto"                # auto: TLS unless the server is on loopback; "1"; "0"
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    server_name: str | None = None


def client_settings(env=None) -> ClientTLS:
    """The client's TLS settings from GPUWIRE_TLS, GPUWIRE_TLS_CA, GPUWIRE_TLS_CERT,
    GPUWIRE_TLS_KEY, GPUWIRE_TLS_SERVER_NAME (as the C client reads them)."""
    env = os.environ if env is None else env
    mode = (env.get("GPUWIRE_TLS") or "auto").strip().lower()
    mode = {"on": "1", "yes": "1", "true": "1", "off": "0", "no": "0", "false": "0"}.get(mode, mode)
    if mode not in MODES:
        raise TLSError(f"GPUWIRE_TLS={env.get('GPUWIRE_TLS')}: expected auto, 1 or 0")
    return ClientTLS(mode, env.get("GPUWIRE_TLS_CA") or None, env.get("GPUWIRE_TLS_CERT") or None,
                     env.get("GPUWIRE_TLS_KEY") or None, env.get("GPUWIRE_TLS_SERVER_NAME") or None)


def peer_is_loopback(sock: socket.socket) -> bool:
    try:
        peer = sock.getpeername()
    except OSError:
        return False
    if isinstance(peer, str):
        return True  # a Unix socket
    try:
        addr = ipaddress.ip_address(peer[0].split("%")[0])
    except ValueError:
        return False
    mapped = getattr(addr, "ipv4_mapped", None)
    return addr.is_loopback or bool(mapped and mapped.is_loopback)


def client_context(settings: ClientTLS) -> ssl.SSLContext:
    try:
        if settings.ca and os.path.isdir(settings.ca):
            ctx = ssl.create_default_context(capath=settings.ca)
        else:
            ctx = ssl.create_default_context(cafile=settings.ca)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if settings.cert:
            ctx.load_cert_chain(settings.cert, settings.key)
        elif settings.key:
            raise TLSError("GPUWIRE_TLS_KEY is set without GPUWIRE_TLS_CERT")
    except (ssl.SSLError, OSError) as e:
        raise TLSError(f"cannot set up TLS: {getattr(e, 'reason', None) or e}") from e
    return ctx


def wrap_client(sock: socket.socket, host: str, settings: ClientTLS | None = None,
                timeout: float = 30.0) -> socket.socket:
    """sock with TLS if the settings call for it (auto: unless the server is on
    loopback). Raises TLSError with a readable reason."""
    settings = settings or client_settings()
    if settings.mode == "0" or (settings.mode == "auto" and peer_is_loopback(sock)):
        return sock
    ctx = client_context(settings)
    sock.settimeout(timeout)
    try:
        return ctx.wrap_socket(sock, server_hostname=settings.server_name or host)
    except ssl.SSLCertVerificationError as e:
        raise TLSError(f"TLS: the server's certificate is not trusted: {e.verify_message} (set GPUWIRE_TLS_CA or "
                       f"--tls-ca to the CA that signed it)") from e
    except ssl.SSLError as e:
        reason = getattr(e, "reason", None) or str(e)
        hint = ""
        if reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG"):
            hint = (" (the server does not speak TLS on this port: is it started with --tls-cert? For a plaintext "
                    "server on a trusted network use --no-tls or GPUWIRE_TLS=0)")
        raise TLSError(f"TLS handshake failed: {reason.replace('_', ' ').lower()}{hint}") from e
    except (ConnectionError, socket.timeout) as e:
        raise TLSError(f"TLS handshake failed: {e or type(e).__name__} (is the server started with --tls-cert? "
                       f"does it require a client certificate?)") from e
