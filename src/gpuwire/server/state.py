"""What the parts of the server share: one Session per connection, the
Registry of sessions and workers with the server's counters (all under one
lock), the content cache as resolved at start, and the one way every part
refuses a client (an ERROR frame)."""

from __future__ import annotations

import itertools
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from gpuwire import protocol, session_stats
from gpuwire import cache as content_cache  # docs/cache.md
from gpuwire.leases import Lease
from gpuwire.log import clean


def client_text(text: str) -> str:
    """Client-supplied name made safe for one space-separated key=value field."""
    return clean(text, 255).replace(" ", "_") or "?"


def describe_status(code: int) -> str:
    """A worker's exit status in words."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def send_error(conn: socket.socket, code: int, message: str, seq: int = 0) -> None:
    """Tell the client why it is refused, if it still listens."""
    try:
        conn.settimeout(2.0)
        conn.sendall(protocol.pack_error(code, message, seq))
    except OSError:
        pass  # the client may already be gone; closing is all that is left


@dataclass
class Session:
    """One connection, from accept to close (what status and metrics show)."""
    id: int
    peer: str
    started: float = field(default_factory=time.time)
    state: str = "handshake"        # handshake, auth, queued, active, probe, lane
    hello: protocol.Hello | None = None
    token: str | None = None        # id of the token it authenticated with
    lease: Lease | None = None
    worker_pid: int | None = None
    watch: socket.socket | None = None  # duplicate of the worker's socket, for TCP_INFO
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
        return (f"{client_text(h.host)} pid {h.pid} {client_text(h.prog)} (session {self.id})" if h
                else f"session {self.id}")


@dataclass(frozen=True)
class ContentCache:
    """The content cache the workers use, as resolved at start (docs/cache.md)."""
    dir: Path | None = None                      # None: off
    max_bytes: int = 0
    disk: content_cache.DiskFigures | None = None  # the folder's size, for metrics


class Registry:
    """Every connection's Session, every running worker, the counters, and the
    stop request. `lock` guards all of them (and admission's connection counts)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ids = itertools.count(1)
        self.sessions: dict[int, Session] = {}
        self.workers: dict[int, subprocess.Popen] = {}
        self.stopping = threading.Event()
        self.stop_reason = ""
        self.started = time.time()
        self.counters = {"connections": 0, "sessions": 0, "probes": 0, "auth_ok": 0, "auth_failed": 0,
                         "idle_ended": 0, "bytes_sent_ended": 0, "bytes_received_ended": 0, "calls_ended": 0,
                         "round_trips_ended": 0, "tls_sessions": 0, "lanes": 0}
        self.refused: dict[str, int] = {}     # reason -> count
        self.cache_ended: dict[str, int] = {}  # cache counters of sessions that ended

    def count(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.counters[key] = self.counters.get(key, 0) + n

    def count_refused(self, reason: str) -> None:
        with self.lock:
            self.refused[reason] = self.refused.get(reason, 0) + 1
