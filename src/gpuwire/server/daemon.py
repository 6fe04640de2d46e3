"""The Server: one object that wires the parts together from one ServerConfig
and what start-up resolved from it (driver, tokens, TLS, content cache) —
listener -> admission -> sessions, all sharing one Registry — and exposes
bind, serve_forever, request_stop, stop and snapshot."""

from __future__ import annotations

from typing import Callable

from gpuwire import address, paths, tls
from gpuwire.auth import TokenStore
from gpuwire.config import ServerConfig
from gpuwire.driver import Driver
from gpuwire.leases import LeaseManager
from gpuwire.log import Logger
from gpuwire.server.admission import Admission
from gpuwire.server.listener import Listener
from gpuwire.server.sessions import Sessions
from gpuwire.server.snapshot import Snapshot
from gpuwire.server.state import ContentCache, Registry


class Server:
    def __init__(self, config: ServerConfig, driver: Driver, log: Logger | None = None, *,
                 tokens: TokenStore | None = None, tls_settings: tls.ServerTLS | None = None,
                 cache: ContentCache | None = None, log_tail: Callable[[int], list] | None = None,
                 worker_cmd: list[str] | None = None):
        """config: the settings (config.listen is parsed here: ValueError if malformed).
        tokens: None for no authentication; tls_settings: None for plaintext only;
        cache: the content cache resolved at start (None: off); log_tail(n): recent
        log lines for the admin endpoint; worker_cmd: the worker (tests use a stand-in)."""
        self.config = config
        self.driver = driver
        self.log = log or Logger()
        self.tokens = tokens
        self.tls = tls_settings
        self.cache = cache or ContentCache()
        self.registry = Registry()
        self.leases = LeaseManager(driver.device_count)
        self._snapshot = Snapshot(config, self.registry, driver, self.leases, self.cache, tokens is not None,
                                  tls_settings, lambda: self.address_text if self.address else None, log_tail)
        self.sessions = Sessions(config, self.registry, driver, self.leases, self.log, self.cache,
                                 worker_cmd if worker_cmd is not None else [str(paths.worker())])
        self.admission = Admission(config, self.registry, self.leases, self.sessions, self.log, tokens,
                                   self.snapshot)
        self.listener = Listener(config, self.registry, self.admission, self.log, tls_settings)

    # --- lifecycle --------------------------------------------------------

    def bind(self) -> tuple[str, int]:
        return self.listener.bind()

    @property
    def address(self) -> tuple[str, int] | None:
        return self.listener.address

    @property
    def address_text(self) -> str:
        assert self.address is not None
        return address.format(*self.address)

    def serve_forever(self) -> None:
        if not self.listener.bound:
            self.bind()
        self.log.info(f"listening on {self.address_text}", address=self.address_text, driver=self.driver.kind,
                      driver_path=str(self.driver.path), auth="tokens" if self.tokens is not None else "off",
                      tls="off" if self.tls is None else "required" if self.tls.required else "optional")
        self.sessions.start_idle_reaper()
        self.sessions.start_busy_watch()
        self.listener.accept_loop()
        reason = self.registry.stop_reason
        why = f" ({reason})" if reason else ""
        self.log.info(f"stopped accepting connections{why}")

    def request_stop(self, reason: str = "") -> None:
        """Safe from a signal handler (no locks, no logging): the accept loop
        exits within 0.5 s and logs the reason."""
        self.registry.stop_reason = reason
        self.registry.stopping.set()

    def stop(self) -> None:
        """Stop accepting and end every worker (SIGTERM, then SIGKILL after a grace period)."""
        self.registry.stopping.set()
        self.listener.close()
        self.sessions.stop_workers()

    # --- what status, metrics and the dashboard show -------------------------

    def snapshot(self, logs: int = 0) -> dict:
        """The server's state as JSON-ready data (status probe, /status.json, metrics)."""
        return self._snapshot.take(logs)
