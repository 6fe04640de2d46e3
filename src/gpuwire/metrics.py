"""The server's admin endpoint: Prometheus text at /metrics, the JSON snapshot
the dashboard reads at /status.json, and the GPU figures both show (NVML
through the optional `pynvml` module, from the nvidia-ml-py package: the
`metrics` extra, pip install 'gpuwire[metrics]').

Off unless `gpuwire server --metrics HOST:PORT`. It has no authentication:
bind it to loopback or a management network.
"""

from __future__ import annotations

import collections
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qs, urlparse

from gpuwire.driver import Driver
from gpuwire.log import Logger

NVML_CACHE_S = 1.0
LOG_TAIL_MAX = 2000


class LogRing:
    """A log stream that keeps the last lines (for /status.json) and passes
    everything on to `inner` (stderr)."""

    def __init__(self, inner, keep: int = LOG_TAIL_MAX):
        self.inner = inner
        self._lines: collections.deque[str] = collections.deque(maxlen=keep)
        self._lock = threading.Lock()

    def write(self, text: str) -> None:
        with self._lock:
            self._lines.extend(ln for ln in text.splitlines() if ln)
        if self.inner is not None:
            self.inner.write(text)

    def flush(self) -> None:
        if self.inner is not None:
            self.inner.flush()

    def tail(self, n: int) -> list[str]:
        with self._lock:
            return list(self._lines)[-max(0, n):] if n else []


# --- GPUs -------------------------------------------------------------------

_nvml_lock = threading.Lock()
_nvml_state: dict = {"tried": False, "mod": None, "error": "", "at": 0.0, "value": None}


def _nvml():
    """The initialised pynvml module, or None (with the reason kept)."""
    if not _nvml_state["tried"]:
        _nvml_state["tried"] = True
        try:
            import pynvml  # optional: pip install 'gpuwire[metrics]' (nvidia-ml-py)

            pynvml.nvmlInit()
            _nvml_state["mod"] = pynvml
        except Exception as e:  # ImportError, or NVML present but no driver
            _nvml_state["error"] = f"{type(e).__name__}: {e}"
    return _nvml_state["mod"]


def _nvml_gpus(nv) -> list[dict]:
    out = []
    for i in range(nv.nvmlDeviceGetCount()):
        h = nv.nvmlDeviceGetHandleByIndex(i)
        name = nv.nvmlDeviceGetName(h)
        g: dict = {"index": i, "name": name.decode() if isinstance(name, bytes) else str(name), "source": "nvml"}
        try:
            mem = nv.nvmlDeviceGetMemoryInfo(h)
            g.update(memory_total=int(mem.total), memory_used=int(mem.used))
        except Exception:
            pass
        try:
            util = nv.nvmlDeviceGetUtilizationRates(h)
            g.update(utilization=int(util.gpu) / 100.0, memory_utilization=int(util.memory) / 100.0)
        except Exception:
            pass
        try:
            g["temperature_c"] = int(nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU))
        except Exception:
            pass
        try:
            g["processes"] = [{"pid": int(p.pid), "memory_used": int(p.usedGpuMemory or 0)}
                              for p in nv.nvmlDeviceGetComputeRunningProcesses(h)]
        except Exception:
            pass
        out.append(g)
    return out


def gpu_info(driver: Driver) -> list[dict]:
    """Per-GPU figures: from NVML when it works on a real driver (cached for a
    second), else what the driver probe said (name only)."""
    if driver.kind != "standin":
        with _nvml_lock:
            nv = _nvml()
            if nv is not None:
                now = time.monotonic()
                if _nvml_state["value"] is None or now - _nvml_state["at"] > NVML_CACHE_S:
                    try:
                        _nvml_state["value"] = _nvml_gpus(nv)
                    except Exception as e:
                        _nvml_state["error"] = f"{type(e).__name__}: {e}"
                        _nvml_state["value"] = None
                    _nvml_state["at"] = now
                if _nvml_state["value"] is not None:
                    return [dict(g) for g in _nvml_state["value"]]
    name = driver.device_name or driver.desc
    return [{"index": i, "name": name, "source": "driver"} for i in range(driver.device_count)]


# --- Prometheus text format -----------------------------------------------------


def _esc(v: object) -> str:
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**kv: object) -> str:
    items = [f'{k}="{_esc(v)}"' for k, v in kv.items() if v is not None]
    return "{" + ",".join(items) + "}" if items else ""


class _Out:
    def __init__(self):
        self.lines: list[str] = []
        self._declared: set[str] = set()

    def metric(self, name: str, kind: str, help_: str, value: float, /, **labels: object) -> None:
        if name not in self._declared:
            self._declared.add(name)
            self.lines.append(f"# HELP {name} {help_}")
            self.lines.append(f"# TYPE {name} {kind}")
        self.lines.append(f"{name}{_labels(**labels)} {float(value)!r}" if isinstance(value, float)
                          else f"{name}{_labels(**labels)} {int(value)}")


def render(snap: dict) -> str:
    """Prometheus text exposition (version 0.0.4) of a Server.snapshot()."""
    o = _Out()
    srv, drv, tot, leases = snap["server"], snap["driver"], snap["totals"], snap["leases"]
    o.metric("gpuwire_build_info", "gauge", "gpuwire version and driver served.", 1, version=srv["version"],
             proto=srv["proto_version"], driver=drv["kind"], driver_version=drv["version"])
    o.metric("gpuwire_start_time_seconds", "gauge", "When the server started (Unix time).", float(srv["started"]))
    o.metric("gpuwire_uptime_seconds", "gauge", "Seconds since the server started.", float(srv["uptime_s"]))
    o.metric("gpuwire_auth_required", "gauge", "1 if clients must authenticate with a token.", int(srv["auth"]))
    o.metric("gpuwire_connections_total", "counter", "Connections accepted.", tot["connections"])
    o.metric("gpuwire_sessions_total", "counter", "Sessions that got a worker.", tot["sessions_started"])
    o.metric("gpuwire_sessions_active", "gauge", "Sessions with a running worker.", tot["sessions_active"])
    o.metric("gpuwire_status_probes_total", "counter", "Status probes answered.", tot["probes"])
    o.metric("gpuwire_auth_total", "counter", "Authentication attempts by result.", tot["auth_ok"], result="ok")
    o.metric("gpuwire_auth_total", "counter", "", tot["auth_failed"], result="failed")
    o.metric("gpuwire_idle_sessions_ended_total", "counter", "Sessions ended by the lease idle timeout.",
             tot["idle_ended"])
    for reason, n in sorted(tot["refused"].items()):
        o.metric("gpuwire_refused_total", "counter", "Connections refused, by reason.", n, reason=reason)
    o.metric("gpuwire_bytes_received_total", "counter", "Bytes received from clients (TCP_INFO).", tot["bytes_in"])
    o.metric("gpuwire_bytes_sent_total", "counter", "Bytes sent to clients and acknowledged (TCP_INFO).",
             tot["bytes_out"])
    _activity_metrics(o, snap)
    held = leases["held"]
    for mode in ("shared", "exclusive"):
        o.metric("gpuwire_leases", "gauge", "Leases held, by mode.", sum(1 for h in held if h["mode"] == mode),
                 mode=mode)
    o.metric("gpuwire_lease_queue_length", "gauge", "Lease requests waiting.", len(leases["queued"]))
    o.metric("gpuwire_leases_granted_total", "counter", "Leases granted.", leases["granted_total"])
    o.metric("gpuwire_leases_refused_total", "counter", "Lease requests refused (busy and --no-wait).",
             leases["refused_total"])
    o.metric("gpuwire_lease_wait_seconds_total", "counter", "Seconds granted leases spent waiting.",
             float(leases["wait_seconds_total"]))
    for s in snap["sessions"]:
        if "bytes_in" not in s:
            continue
        lab = dict(session=s["id"], host=s["host"], prog=s["prog"], pid=s["pid"])
        o.metric("gpuwire_session_bytes_received_total", "counter", "Bytes received from this session's client.",
                 s["bytes_in"], **lab)
        o.metric("gpuwire_session_bytes_sent_total", "counter", "Bytes sent to this session's client.", s["bytes_out"],
                 **lab)
        o.metric("gpuwire_session_rtt_seconds", "gauge", "Kernel's smoothed TCP RTT for this session.",
                 float(s["rtt_s"]), **lab)
        o.metric("gpuwire_session_idle_seconds", "gauge", "Seconds since this session's last data.",
                 float(s["idle_s"]), **lab)
        if s.get("gpu_memory") is not None:
            o.metric("gpuwire_session_gpu_memory_bytes", "gauge", "GPU memory of this session's worker (NVML).",
                     s["gpu_memory"], **lab)
        _session_activity_metrics(o, s, lab)
    _cache_metrics(o, snap)
    for g in snap["gpus"]:
        lab = dict(gpu=g["index"], name=g["name"])
        if "memory_total" in g:
            o.metric("gpuwire_gpu_memory_total_bytes", "gauge", "GPU memory (NVML).", g["memory_total"], **lab)
            o.metric("gpuwire_gpu_memory_used_bytes", "gauge", "GPU memory in use (NVML).", g["memory_used"], **lab)
        if "utilization" in g:
            o.metric("gpuwire_gpu_utilization_ratio", "gauge", "GPU busy fraction over NVML's last sample period.",
                     float(g["utilization"]), **lab)
        if "temperature_c" in g:
            o.metric("gpuwire_gpu_temperature_celsius", "gauge", "GPU temperature (NVML).", g["temperature_c"],
                     **lab)
    return "\n".join(o.lines) + "\n"


def _cache_metrics(o: _Out, snap: dict) -> None:
    """The content cache (docs/cache.md): counters over all sessions, the folder, per session."""
    c = snap.get("cache")
    if not c or c.get("dir") is None:
        return
    t = c["totals"]
    o.metric("gpuwire_cache_hits_total", "counter", "Chunk references the content cache answered.", t["hits"])
    o.metric("gpuwire_cache_misses_total", "counter", "Chunk references it lacked (bytes then sent).", t["misses"])
    o.metric("gpuwire_cache_bytes_avoided_total", "counter", "Bytes the cache supplied instead of the network.",
             t["hit_bytes"])
    o.metric("gpuwire_cache_miss_bytes_total", "counter", "Bytes of chunks the cache lacked.", t["miss_bytes"])
    o.metric("gpuwire_cache_stored_bytes_total", "counter", "Bytes stored into the cache.", t["stored_bytes"])
    o.metric("gpuwire_cache_corrupt_total", "counter", "Entries found corrupt or truncated (removed, refetched).",
             t["corrupt"])
    o.metric("gpuwire_cache_evicted_total", "counter", "Entries evicted under the size cap.", t["evicted"])
    o.metric("gpuwire_cache_store_failed_total", "counter",
             "Writes into the cache folder that failed (a full disk evicts and retries once).", t.get("store_failed", 0))
    if "bytes" in c:
        o.metric("gpuwire_cache_disk_bytes", "gauge", "Bytes the cache folder holds.", c["bytes"])
        o.metric("gpuwire_cache_entries", "gauge", "Entries the cache folder holds.", c["entries"])
    o.metric("gpuwire_cache_max_bytes", "gauge", "The cache's size cap (0: none).", c["max_bytes"])
    for s in snap["sessions"]:
        if "cache" in s:
            lab = dict(session=s["id"], host=s["host"], prog=s["prog"], pid=s["pid"])
            o.metric("gpuwire_session_cache_bytes_avoided_total", "counter", "Bytes this session got from the cache.",
                     s["cache"].get("hit_bytes", 0), **lab)
            o.metric("gpuwire_session_cache_misses_total", "counter", "Chunks this session had to send.",
                     s["cache"].get("misses", 0), **lab)


def _activity_metrics(o: _Out, snap: dict) -> None:
    """Calls and traffic over all sessions (the workers' counters, session_stats.py), rates
    over the last seconds (also derivable with PromQL rate()), TLS."""
    tot, srv = snap["totals"], snap["server"]
    if "calls" in tot:
        o.metric("gpuwire_calls_total", "counter", "Requests (driver calls) the workers received.", tot["calls"])
        o.metric("gpuwire_round_trips_total", "counter", "Replies the workers sent (calls the client waited for).",
                 tot["round_trips"])
        o.metric("gpuwire_calls_per_second", "gauge", "Requests per second over the last seconds, all sessions.",
                 float(tot["calls_per_s"]))
        o.metric("gpuwire_network_receive_bytes_per_second", "gauge",
                 "Bytes per second received from clients over the last seconds (TCP_INFO).",
                 float(tot["bytes_in_per_s"]))
        o.metric("gpuwire_network_transmit_bytes_per_second", "gauge",
                 "Bytes per second sent to clients over the last seconds (TCP_INFO).", float(tot["bytes_out_per_s"]))
    if "tls" in srv:
        o.metric("gpuwire_tls_required", "gauge", "1 if clients must use TLS.", int(srv["tls"] == "required"))
        o.metric("gpuwire_tls_sessions_total", "counter", "Connections that completed a TLS handshake.",
                 tot.get("tls_sessions", 0))
    o.metric("gpuwire_lanes_total", "counter",
             "Lane connections (extra connections for copy bytes) handed to a session's worker.",
             tot.get("lanes", 0))


def _session_activity_metrics(o: _Out, s: dict, lab: dict) -> None:
    if "calls" in s:
        o.metric("gpuwire_session_calls_total", "counter", "Requests this session's worker received.", s["calls"], **lab)
        o.metric("gpuwire_session_round_trips_total", "counter", "Replies this session's worker sent.", s["round_trips"],
                 **lab)
        o.metric("gpuwire_session_busy_seconds", "gauge", "How long the call running now has run (0: none).",
                 float(s.get("busy_s") or 0.0), **lab)
    if "calls_per_s" in s:
        o.metric("gpuwire_session_calls_per_second", "gauge", "This session's requests per second.",
                 float(s["calls_per_s"]), **lab)
        o.metric("gpuwire_session_receive_bytes_per_second", "gauge", "Bytes per second from this client.",
                 float(s["bytes_in_per_s"]), **lab)
        o.metric("gpuwire_session_transmit_bytes_per_second", "gauge", "Bytes per second to this client.",
                 float(s["bytes_out_per_s"]), **lab)


# --- the HTTP endpoint ----------------------------------------------------------------


ADMIN_REQUEST_TIMEOUT = 10.0  # seconds a connection may stay silent mid-request
ADMIN_BACKLOG = 128           # as the main listener's
ADMIN_MAX_HANDLERS = 32       # requests served at once; more are closed at once


class AdminServer:
    """GET /metrics (Prometheus), /status.json[?logs=N] (the dashboard's source)."""

    def __init__(self, host: str, port: int, snapshot: Callable[[int], dict], log: Logger | None = None,
                 request_timeout: float = ADMIN_REQUEST_TIMEOUT, max_handlers: int = ADMIN_MAX_HANDLERS):
        outer = self
        self.log = log if log is not None else Logger()

        class Handler(BaseHTTPRequestHandler):
            server_version = "gpuwire-admin"
            timeout = request_timeout  # socket timeout: a client that never sends is closed

            def do_GET(self):  # noqa: N802 (http.server's name)
                url = urlparse(self.path)
                try:
                    if url.path == "/metrics":
                        body = render(outer.snapshot(0)).encode()
                        ctype = "text/plain; version=0.0.4; charset=utf-8"
                    elif url.path == "/status.json":
                        q = parse_qs(url.query)
                        try:
                            n = min(LOG_TAIL_MAX, max(0, int(q.get("logs", ["200"])[0])))
                        except ValueError:
                            n = 200
                        body = json.dumps(outer.snapshot(n), indent=1).encode()
                        ctype = "application/json"
                    elif url.path == "/":
                        body = b"gpuwire admin endpoint: /metrics /status.json?logs=N\n"
                        ctype = "text/plain; charset=utf-8"
                    else:
                        self.send_error(404)
                        return
                except Exception as e:  # a broken snapshot must not kill the endpoint
                    self.send_error(500, explain=f"{type(e).__name__}: {e}")
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format, *args):  # noqa: A002 (http.server's signature)
                pass  # scrapes every few seconds would flood the server log

        slots = threading.BoundedSemaphore(max_handlers)

        class HTTPServer(ThreadingHTTPServer):
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
            request_queue_size = ADMIN_BACKLOG

            def process_request(self, request, client_address):
                # A flood of connections must not become a flood of threads.
                if not slots.acquire(blocking=False):
                    outer.refused += 1
                    self.shutdown_request(request)
                    return
                try:
                    super().process_request(request, client_address)
                except BaseException:
                    slots.release()  # no thread started: its slot is free again
                    raise

            def process_request_thread(self, request, client_address):
                try:
                    super().process_request_thread(request, client_address)
                finally:
                    slots.release()

            def handle_error(self, request, client_address):
                err = sys.exc_info()[1]
                if isinstance(err, (ConnectionError, TimeoutError)):
                    return  # the client went away or stalled: nothing to report
                outer.log.warn(f"admin endpoint: request from {client_address[0]} failed: "
                               f"{type(err).__name__}: {err}")

        self.snapshot = snapshot
        self.refused = 0  # connections closed because every handler was busy
        self.httpd = HTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.address = self.httpd.server_address[:2]
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True, name="gpuwire-admin")

    def start(self) -> "AdminServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
