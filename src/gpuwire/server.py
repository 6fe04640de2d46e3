"""The gpuwire server daemon: accepts clients, checks their HELLO, and hands each
connection to its own data-plane worker process (gpuwire-worker).

Standard library only. One thread per connection: it reads the handshake, spawns
the worker with the socket, then relays the worker's log lines until it exits.
Nothing a client sends can raise out of a connection thread.
"""

from __future__ import annotations

import itertools
import re
import signal
import socket
import subprocess
import threading
import time

from gpuwire import paths, protocol
from gpuwire.driver import Driver
from gpuwire.log import Logger, clean

DEFAULT_LISTEN = "127.0.0.1:7750"
HANDSHAKE_TIMEOUT = 10.0
WORKER_STOP_GRACE = 3.0
_WORKER_PREFIX = re.compile(r"^worker session=\S+: ")
_LEVEL_WORDS = {"DEBUG": "DEBUG", "INFO": "INFO", "WARN": "WARN", "WARNING": "WARN", "ERROR": "ERROR",
                "FATAL": "ERROR"}


def parse_address(text: str, default_port: int = 7750) -> tuple[str, int]:
    """HOST:PORT, [V6]:PORT, :PORT (all interfaces) or HOST. Raises ValueError."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"bad address {text!r}: expected [IPV6]:PORT")
        port_s = rest[1:] if rest else str(default_port)
    elif text.count(":") == 1:
        host, _, port_s = text.partition(":")
    elif ":" in text:
        raise ValueError(f"bad address {text!r}: write IPv6 addresses as [ADDR]:PORT")
    else:
        host, port_s = text, str(default_port)
    if not port_s.isdigit() or not 0 <= int(port_s) <= 65535:
        raise ValueError(f"bad port in address {text!r}")
    return host or "0.0.0.0", int(port_s)


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


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


class Server:
    def __init__(self, listen: str, driver: Driver, log: Logger | None = None,
                 handshake_timeout: float = HANDSHAKE_TIMEOUT, max_sessions: int = 256,
                 worker_cmd: list[str] | None = None):
        self.listen_host, self.listen_port = parse_address(listen)
        self.driver = driver
        self.log = log or Logger()
        self.handshake_timeout = handshake_timeout
        self.max_sessions = max_sessions
        self.worker_cmd = worker_cmd if worker_cmd is not None else [str(paths.worker())]
        self.address: tuple[str, int] | None = None
        self._sock: socket.socket | None = None
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._active = 0                      # connections in handshake or session
        self._workers: dict[int, subprocess.Popen] = {}
        self._stop = threading.Event()
        self._stop_reason = ""

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
                      driver_path=str(self.driver.path))
        assert self._sock is not None
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
        sid = next(self._ids)
        peer_text = format_address(peer[0], peer[1])
        with self._lock:
            full = self._active >= self.max_sessions
            if not full:
                self._active += 1
        if full:
            self.log.warn(f"refused: {self.max_sessions} sessions already active", session=sid, peer=peer_text)
            self._send_error(conn, protocol.ERR_REFUSED,
                             f"gpuwire server is busy ({self.max_sessions} sessions active); try again later")
            conn.close()
            return
        t = threading.Thread(target=self._connection, args=(conn, sid, peer_text), daemon=True,
                             name=f"gpuwire-session-{sid}")
        t.start()

    def _connection(self, conn: socket.socket, sid: int, peer: str) -> None:
        try:
            hello = self._handshake(conn, sid, peer)
            if hello is not None:
                self._run_session(conn, sid, peer, hello)
        except Exception as e:  # the server must outlive any single connection
            self.log.error(f"internal error in connection thread: {type(e).__name__}: {e}", session=sid, peer=peer)
        finally:
            try:
                conn.close()
            except OSError:
                pass
            with self._lock:
                self._active -= 1

    def _send_error(self, conn: socket.socket, code: int, message: str, seq: int = 0) -> None:
        try:
            conn.settimeout(2.0)
            conn.sendall(protocol.pack_error(code, message, seq))
        except OSError:
            pass  # the client may already be gone; closing is all that is left

    def _handshake(self, conn: socket.socket, sid: int, peer: str) -> protocol.Hello | None:
        deadline = time.monotonic() + self.handshake_timeout
        seq = 0
        try:
            hdr = protocol.unpack_header(protocol.recv_exact(conn, protocol.HEADER_SIZE, deadline))
            seq = hdr.seq
            protocol.check_hello_header(hdr)
            return protocol.parse_hello(protocol.recv_exact(conn, hdr.length, deadline))
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

    def _run_session(self, conn: socket.socket, sid: int, peer: str, hello: protocol.Hello) -> None:
        client = f"{peer} pid={hello.pid} host={_token(hello.host)} prog={_token(hello.prog)}"
        conn.settimeout(None)  # the worker gets a blocking socket
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        fd = conn.fileno()
        cmd = self.worker_cmd + ["--fd", str(fd), "--driver", str(self.driver.path), "--session", str(sid),
                                 "--api-digest", str(hello.api_digest), "--client", client]
        with self._lock:
            if self._stop.is_set():
                proc = None
            else:
                try:
                    proc = subprocess.Popen(cmd, pass_fds=(fd,), stdin=subprocess.DEVNULL,
                                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                            start_new_session=True)
                except OSError as e:
                    self.log.error(f"could not start worker: {e}", session=sid, peer=peer)
                    self._send_error(conn, protocol.ERR_DRIVER, f"gpuwire server could not start its worker: {e}")
                    return
                self._workers[sid] = proc
        if proc is None:
            self._send_error(conn, protocol.ERR_REFUSED, "gpuwire server is shutting down")
            return
        conn.close()  # the worker owns the connection now
        started = time.monotonic()
        self.log.info("session start", session=sid, peer=peer, pid=hello.pid, host=_token(hello.host),
                      prog=_token(hello.prog), api_digest=f"0x{hello.api_digest:08x}", worker_pid=proc.pid)
        try:
            assert proc.stdout is not None
            while True:
                raw = proc.stdout.readline(8192)  # bounded: a line without end cannot grow memory
                if not raw:
                    break
                self._relay(sid, raw)
        finally:
            code = proc.wait()
            with self._lock:
                self._workers.pop(sid, None)
            level = "INFO" if code == 0 else "WARN"
            self.log.log(level, "session end", session=sid, status=describe_status(code),
                         seconds=f"{time.monotonic() - started:.3f}")

    def _relay(self, sid: int, raw: bytes) -> None:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        line = _WORKER_PREFIX.sub("", line, count=1)  # the server's own fields already say this
        if not line.strip():
            return
        level = "INFO"
        for word in line.split()[:3]:
            if word.upper().rstrip(":") in _LEVEL_WORDS:
                level = _LEVEL_WORDS[word.upper().rstrip(":")]
                break
        self.log.log(level, line, session=sid, src="worker")


def run_server(listen: str, driver_spec: str, log: Logger, max_sessions: int = 256,
               handshake_timeout: float = HANDSHAKE_TIMEOUT) -> int:
    """`gpuwire server`: resolve the driver, serve until SIGINT/SIGTERM, exit 0."""
    from gpuwire import driver as drivers

    try:
        parse_address(listen)
    except ValueError as e:
        log.error(f"cannot start: {e}")
        return 2
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
    server = Server(listen, drv, log, handshake_timeout=handshake_timeout, max_sessions=max_sessions)
    try:
        server.bind()
    except (OSError, ValueError) as e:
        log.error(f"cannot listen on {listen}: {e}")
        return 1

    def on_signal(signum, _frame):
        server.request_stop(f"received {signal.Signals(signum).name}, shutting down")

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        server.serve_forever()
    finally:
        server.stop()
    log.info("server exited")
    return 0
