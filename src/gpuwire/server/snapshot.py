"""The server's state as JSON-ready data, for the status probe, the admin
endpoint's /status.json and /metrics, and `gpuwire top`: the server and its
driver, GPUs, leases, one row per connection (traffic from TCP_INFO, the
worker's own counters, rates), totals, and the content cache."""

from __future__ import annotations

import os
import time
from typing import Callable

from gpuwire import __version__, protocol, session_stats, tcpinfo, tls
from gpuwire import cache as content_cache  # docs/cache.md
from gpuwire.config import ServerConfig
from gpuwire.driver import Driver
from gpuwire.leases import LeaseManager
from gpuwire.log import clean
from gpuwire.server.sessions import session_traffic
from gpuwire.server.state import ContentCache, Registry


class Snapshot:
    def __init__(self, config: ServerConfig, registry: Registry, driver: Driver, leases: LeaseManager,
                 cache: ContentCache, auth: bool, tls_settings: tls.ServerTLS | None,
                 address_text: Callable[[], str | None], log_tail: Callable[[int], list] | None):
        self.config = config
        self.registry = registry
        self.driver = driver
        self.leases = leases
        self.cache = cache
        self.auth = auth                      # whether clients authenticate with tokens
        self.tls = tls_settings
        self.address_text = address_text      # the listening address, once bound
        self.log_tail = log_tail              # callable(n) -> recent log lines, for the admin endpoint

    def take(self, logs: int = 0) -> dict:
        """The server's state now, with the last `logs` log lines."""
        from gpuwire import metrics

        reg = self.registry
        now = time.time()
        with reg.lock:
            sessions = list(reg.sessions.values())
            counters = dict(reg.counters)
            refused = dict(reg.refused)
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
                bytes_in, bytes_out = session_traffic(s, info, work)
                row.update(bytes_in=bytes_in, bytes_out=bytes_out, rtt_s=info.rtt_s, idle_s=round(info.idle_s, 3))
                live_sent += bytes_out
                live_recv += bytes_in
            if work is not None:  # the worker's own counters (session_stats.py)
                row.update(calls=work["requests"], round_trips=work["replies"], call_bytes_in=work["bytes_in"],
                           call_bytes_out=work["bytes_out"], busy_s=session_stats.busy_seconds(work))
                if row["busy_s"] is not None:  # what it waits in: a hang names its call
                    row["busy_call"] = protocol.op_name(work.get("busy_op", 0))
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
            figures = content_cache.session_figures(work)
            if figures:
                row["cache"] = figures
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
                       "address": self.address_text(), "started": reg.started,
                       "uptime_s": round(now - reg.started, 3), "auth": self.auth,
                       "max_sessions": self.config.max_sessions,
                       "lease_idle_timeout_s": self.config.lease_idle_timeout,
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
        snap["cache"] = self._cache_figures(rows)
        if logs and self.log_tail is not None:
            snap["logs"] = self.log_tail(logs)
        return snap

    def _cache_figures(self, rows: list[dict]) -> dict:
        """The content cache: its folder, and hits/misses/bytes avoided over
        every session (ended ones plus the live ones' latest counters)."""
        with self.registry.lock:
            total = dict(self.registry.cache_ended)
        for row in rows:
            for k, v in row.get("cache", {}).items():
                total[k] = total.get(k, 0) + v
        cache = self.cache
        out = {"dir": str(cache.dir) if cache.dir is not None else None,
               "max_bytes": cache.max_bytes, "totals": {k: total.get(k, 0) for k in content_cache.STAT_FIELDS}}
        disk = cache.disk.get() if cache.disk is not None else None
        if disk is not None:
            out.update(entries=disk["entries"], bytes=disk["bytes"])
        return out
