"""`gpuwire server`: from a ServerConfig to a serving daemon. Checks the
settings and resolves what they name (tokens, TLS, driver, content cache),
refusing to start with one line that says why; ends orphaned workers; binds;
starts the admin endpoint; serves until SIGINT/SIGTERM."""

from __future__ import annotations

import importlib.util
import os
import signal

from gpuwire import address, protocol
from gpuwire import cache as content_cache  # docs/cache.md
from gpuwire.config import ServerConfig
from gpuwire.log import Logger
from gpuwire.server.daemon import Server
from gpuwire.server.listener import server_tls
from gpuwire.server.sessions import end_orphans
from gpuwire.server.state import ContentCache


def run_server(config: ServerConfig, log: Logger) -> int:
    """`gpuwire server`: resolve the driver, serve until SIGINT/SIGTERM, exit 0."""
    from gpuwire import auth
    from gpuwire import driver as drivers
    from gpuwire import metrics, paths

    cfg = config
    ring = metrics.LogRing(log.stream)
    log.stream = ring  # keep recent lines for the dashboard
    try:
        host, _ = address.parse(cfg.listen, listen=True, what="--listen")
        if cfg.metrics:
            address.parse(cfg.metrics, address.DEFAULT_METRICS_PORT, listen=True, what="--metrics")
    except ValueError as e:
        log.error(f"cannot start: {e}")
        return 2
    loopback = auth.is_loopback(host)
    tokens = None
    if cfg.require_auth or not loopback:
        if cfg.insecure_no_auth and not cfg.require_auth:
            log.warn(f"listening on {host}, beyond loopback, WITHOUT authentication (--insecure-no-auth): anyone "
                     f"who can reach this port can run code on its GPUs")
        else:
            tokens = auth.TokenStore(cfg.tokens_path or auth.default_state_dir() / auth.TOKENS_FILE)
            try:
                n = len(tokens.entries())
            except auth.AuthError as e:
                log.error(f"cannot start: {e}")
                return 1
            why = "--require-auth" if cfg.require_auth else f"listening on {host}, beyond loopback"
            log.info(f"clients must authenticate with a token ({why})", tokens_file=str(tokens.path), tokens=n)
            if n == 0:
                log.error(f"cannot start: clients must authenticate ({why}) but {tokens.path} holds no tokens: "
                          f"create one with `gpuwire token create --tokens-file {tokens.path}`"
                          + ("" if cfg.require_auth else ", or listen on 127.0.0.1, or (trusted networks only) "
                                                         "pass --insecure-no-auth"))
                return 1
            warning = tokens.insecure_mode()
            if warning:
                log.warn(warning)
    for flag, path in (("--tls-cert", cfg.tls_cert), ("--tls-key", cfg.tls_key),
                       ("--tls-client-ca", cfg.tls_client_ca)):
        if path and not os.path.exists(path):
            log.error(f"cannot start: {flag} {path}: no such file")
            return 1
    tls_settings, err = server_tls(host, loopback, log, cfg.tls_cert, cfg.tls_key, cfg.tls_client_ca,
                                   cfg.require_tls, cfg.insecure_no_tls)
    if err:
        log.error(f"cannot start: {err}")
        return 1
    try:
        drv = drivers.resolve(cfg.driver)
    except (drivers.DriverError, paths.NativeMissing) as e:
        log.error(f"cannot start: {e}")
        return 1
    if drv.is_standin:
        log.warn(drivers.describe(drv), driver="standin", path=str(drv.path))
    else:
        log.info(drivers.describe(drv), driver=drv.kind, path=str(drv.path), devices=drv.device_count,
                 driver_version=drv.driver_version)
    try:
        cache_dir = content_cache.resolve_dir(cfg.cache_dir)
        cache_max_bytes = content_cache.parse_max_bytes(
            cfg.cache_max_bytes if cfg.cache_max_bytes is not None else content_cache.DEFAULT_MAX_BYTES)
    except ValueError as e:
        log.error(f"cannot start: cache_max_bytes: {e}")
        return 2
    if not 0 <= cfg.lanes <= protocol.LANES_MAX:
        log.error(f"cannot start: lanes must be 0..{protocol.LANES_MAX}, not {cfg.lanes}")
        return 2
    if not (cfg.client_stall_timeout == 0 or 1 <= cfg.client_stall_timeout <= 86400):  # NaN fails too
        log.error(f"cannot start: client_stall_timeout must be 0 (never) or 1..86400 seconds, "
                  f"not {cfg.client_stall_timeout}")
        return 2
    if cache_dir is None:
        log.info("content cache off: every upload crosses the wire")
    elif (why := _unwritable(cache_dir)) is not None:
        log.error(f"cannot start: the content cache folder {cache_dir} is not usable ({why}); give "
                  f"--cache-dir a folder this user can write, or --cache-dir off")
        return 1
    else:
        log.info("content cache", cache_dir=str(cache_dir), cache_max_bytes=cache_max_bytes,
                 cache_scope=cfg.cache_scope)
    cache = ContentCache(cache_dir, cache_max_bytes, content_cache.DiskFigures(cache_dir))
    server = Server(cfg, drv, log, tokens=tokens, tls_settings=tls_settings, cache=cache, log_tail=ring.tail)
    end_orphans(log)
    try:
        server.bind()
    except (OSError, ValueError) as e:
        log.error(f"cannot listen on {cfg.listen}: {e}")
        return 1
    admin = None
    if cfg.metrics:
        mhost, mport = address.parse(cfg.metrics, address.DEFAULT_METRICS_PORT, listen=True)
        try:
            admin = metrics.AdminServer(mhost, mport, server.snapshot, log=log).start()
        except OSError as e:
            log.error(f"cannot serve metrics on {cfg.metrics}: {e}")
            server.stop()
            return 1
        maddr = address.format(*admin.address)
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


def _unwritable(folder) -> str | None:
    """Why the server could not store files in folder (created if missing); None if it can."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".gpuwire-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        return e.strerror or str(e)
    return None
