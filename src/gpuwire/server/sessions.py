"""Sessions with a worker: spawning each admitted client's gpuwire-worker with
its socket (or, for TLS, one end of a relayed socket pair), lanes and
counters; relaying its log lines until it exits and counting what it did;
ending sessions idle past the lease idle timeout; ending every worker at stop
and, at start, the workers a dead server left behind (the orphan sweep)."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from gpuwire import paths, protocol, session_stats, tcpinfo, tls, visible
from gpuwire import cache as content_cache  # docs/cache.md
from gpuwire.config import ServerConfig
from gpuwire.driver import Driver
from gpuwire.leases import Lease, LeaseManager
from gpuwire.log import Logger
from gpuwire.server.relay import relay_line
from gpuwire.server.state import ContentCache, Registry, Session, client_text, describe_status, send_error

WORKER_STOP_GRACE = 3.0
IPC_DIR_ENV = "GPUWIRE_IPC_DIR"        # where workers register the CUDA IPC handles they made
IPC_TENANT_ENV = "GPUWIRE_IPC_TENANT"  # whose they are: a handle opens only in a session of the same
FD_DIR_ENV = "GPUWIRE_FD_DIR"          # the tenant's folder of workers' fd-broker sockets (handlers/shareable.c)
FD_SESSION_ENV = "GPUWIRE_FD_SESSION"  # the session id a worker's socket is named by


class Sessions:
    """Worker processes, one per session, and what happens to them."""

    def __init__(self, config: ServerConfig, registry: Registry, driver: Driver, leases: LeaseManager,
                 log: Logger, cache: ContentCache, worker_cmd: list[str]):
        self.config = config
        self.registry = registry
        self.driver = driver
        self.leases = leases
        self.log = log
        self.cache = cache
        self.worker_cmd = worker_cmd
        self.nvml_path = nvml_path(driver)   # what workers dlopen for NVML requests
        # CUDA IPC handles made by this server's workers (native/worker/handlers/ipc.c):
        # a folder only this server's user can read, removed at stop
        self.ipc_dir = tempfile.mkdtemp(prefix="gpuwire-ipc-")

    def fd_dir(self, tenant: str) -> Path | None:
        """The tenant's folder for fd-broker sockets (made once, this user's alone);
        None if it cannot be made (the workers then offer no fd handles)."""
        name = "fd-" + hashlib.sha256(tenant.encode("utf-8", "replace")).hexdigest()[:16]
        path = Path(self.ipc_dir) / name
        try:
            path.mkdir(mode=0o700, exist_ok=True)
        except OSError as e:
            self.log.error(f"cannot make the fd-handle folder {path}: {e}")
            return None
        return path

    def worker_env(self, lease: Lease | None, hello: protocol.Hello) -> dict[str, str] | None:
        """The worker's environment: a lease on one GPU of several shows the
        client only that GPU (as its device 0); the client's own
        CUDA_VISIBLE_DEVICES / CUDA_DEVICE_ORDER narrow that further (visible.py)."""
        return visible.worker_env(dict(os.environ), lease.gpus if lease is not None else None,
                                  self.leases.gpu_count, dict(hello.ext.env))

    def run(self, conn: socket.socket, sess: Session) -> None:
        """Start the session's worker, relay its log until it exits, count what it did."""
        reg, cfg, cache = self.registry, self.config, self.cache
        sid, peer, hello = sess.id, sess.peer, sess.hello
        assert hello is not None
        client = f"{peer} pid={hello.pid} host={client_text(hello.host)} prog={client_text(hello.prog)}"
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
                                 "--stall-timeout", f"{cfg.client_stall_timeout:g}", "--server-pid", str(os.getpid())]
        # Lanes (extra connections for copy bytes) reach the worker over a Unix socket;
        # only for plaintext GPU sessions: a lane bypasses the TLS relay.
        lane_chan = lane_end = None
        if cfg.lanes > 0 and not secured and not hello.ext.nvml_only:
            lane_chan, lane_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            lane_chan.setblocking(False)  # a worker that stops taking lanes must not stall this server
            cmd += ["--lane-fd", str(lane_end.fileno()), "--lanes", str(cfg.lanes)]
        lease = sess.lease
        if lease is not None and lease.mem_cap:
            cmd += ["--mem-cap", str(lease.mem_cap)]
        if cache.dir is not None:
            cmd += ["--cache-dir", str(cache.dir), "--cache-max-bytes", str(cache.max_bytes)]
        env = self.worker_env(lease, hello)
        if cache.dir is not None:  # always set: an inherited value must not pick another tenant's folder
            env = dict(os.environ if env is None else env)
            env[content_cache.SCOPE_ENV] = content_cache.scope_dir(sess.token if cfg.cache_scope == "tenant"
                                                                   else None)
        # the tenant is the session's token (every unauthenticated session is one tenant):
        # a handle another tenant made does not open here even if its bytes are guessed
        env = dict(os.environ if env is None else env)
        env[IPC_DIR_ENV] = self.ipc_dir
        env[IPC_TENANT_ENV] = content_cache.scope_dir(sess.token) or "-"
        # POSIX file-descriptor handles (cuMemExportToShareableHandle): an exporting worker listens
        # on <folder>/<session>.sock and an importing one connects only inside its own tenant's
        # folder, so no worker reaches another tenant's (docs/multi-gpu.md)
        fd_dir = self.fd_dir(env[IPC_TENANT_ENV])
        env[FD_DIR_ENV] = str(fd_dir) if fd_dir is not None else ""
        env[FD_SESSION_ENV] = str(sid)
        block = session_stats.create(sid)  # the worker's counters, for status, metrics and top
        fds: tuple[int, ...] = (fd,) + ((lane_end.fileno(),) if lane_end is not None else ())
        if block is not None:
            env = dict(os.environ if env is None else env)
            env[session_stats.ENV] = str(block.fd)
            fds += (block.fd,)
        with reg.lock:
            if reg.stopping.is_set():
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
                    send_error(conn, protocol.ERR_DRIVER, f"gpuwire server could not start its worker: {e}")
                    reg.refused["worker"] = reg.refused.get("worker", 0) + 1
                    return
                reg.workers[sid] = proc
                reg.counters["sessions"] += 1
        if block is not None:
            block.close_fd()  # the worker has its copy; the mapping stays
            sess.stats = block
        if lane_end is not None:
            lane_end.close()  # the worker has its copy
        if proc is None:
            for end in (relay_end, worker_end, lane_chan):
                if end is not None:
                    end.close()
            send_error(conn, protocol.ERR_REFUSED, "gpuwire server is shutting down")
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
        self.log.info("session start", session=sid, peer=peer, pid=hello.pid, host=client_text(hello.host),
                      prog=client_text(hello.prog), api_digest=f"0x{hello.api_digest:08x}", worker_pid=proc.pid,
                      lease=lease.mode if lease else None,
                      gpus=",".join(map(str, sorted(lease.gpus))) if lease else None,
                      mem_cap=(lease.mem_cap or None) if lease else None)

        try:
            assert proc.stdout is not None
            while True:
                raw = proc.stdout.readline(8192)  # bounded: a line without end cannot grow memory
                if not raw:
                    break
                relay_line(self.log, sid, raw)
        finally:
            code = proc.wait()
            with reg.lock:  # no lane is handed over to a closed channel (Listener.hand_over_lane)
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
            fd_folder = (env or {}).get(FD_DIR_ENV)
            if fd_folder:  # an ended session's fd-broker socket: nobody answers there any more
                try:
                    os.unlink(os.path.join(fd_folder, f"{sid}.sock"))
                except OSError:
                    pass
            with reg.lock:
                reg.workers.pop(sid, None)
                if final:
                    reg.counters["calls_ended"] += final["requests"]
                    reg.counters["round_trips_ended"] += final["replies"]
                for k, v in content_cache.session_figures(final).items():
                    reg.cache_ended[k] = reg.cache_ended.get(k, 0) + v
                bytes_in, bytes_out = session_traffic(sess, info, final)
                if bytes_in is not None:
                    reg.counters["bytes_sent_ended"] += bytes_out
                    reg.counters["bytes_received_ended"] += bytes_in
            level = "INFO" if code == 0 else "WARN"
            self.log.log(level, "session end", session=sid, status=describe_status(code),
                         seconds=f"{time.monotonic() - started:.3f}", bytes_in=bytes_in, bytes_out=bytes_out)

    def start_busy_watch(self) -> None:
        """With --busy-report-after, a thread that names, in the log, a call
        that has run on a session's worker that long, then 2x, 4x ... as long:
        a hang (a client waiting in cuEventSynchronize for ever) says where it is."""
        if self.config.busy_report_after <= 0:
            return
        threading.Thread(target=self._busy_watch, daemon=True, name="gpuwire-busy-watch").start()

    def _busy_watch(self) -> None:
        reg, first = self.registry, self.config.busy_report_after
        reported: dict[int, tuple[int, float]] = {}  # session -> (busy_since_ns, next report at)
        while not reg.stopping.wait(min(1.0, first / 4)):
            with reg.lock:
                live = [(s.id, s.stats) for s in reg.sessions.values() if s.state == "active" and s.stats is not None]
            for sid in set(reported) - {sid for sid, _ in live}:
                del reported[sid]
            for sid, block in live:
                work = block.read()
                busy = session_stats.busy_seconds(work)
                if busy is None:
                    reported.pop(sid, None)
                    continue
                since, due = reported.get(sid, (0, first))
                if since != work["busy_since_ns"]:
                    since, due = work["busy_since_ns"], first
                if busy >= due:
                    self.log.warn(f"a call has run for {busy:.0f} s: {protocol.op_name(work.get('busy_op', 0))} "
                                  "(the client waits for it)", session=sid)
                    due *= 2
                reported[sid] = (since, due)

    def start_idle_reaper(self) -> None:
        """With a lease idle timeout, a thread that ends idle sessions until the server stops."""
        if self.config.lease_idle_timeout > 0:
            threading.Thread(target=self._idle_reaper, daemon=True, name="gpuwire-idle-reaper").start()

    def _idle_reaper(self) -> None:
        """End sessions whose connection carried no data either way for
        lease_idle_timeout seconds (as TCP_INFO sees it)."""
        reg, timeout = self.registry, self.config.lease_idle_timeout
        while not reg.stopping.wait(1.0):
            with reg.lock:
                sessions = [s for s in reg.sessions.values() if s.state == "active" and s.watch is not None]
            for s in sessions:
                watch = s.watch
                info = tcpinfo.read(watch) if watch is not None else None
                if info is None or info.idle_s < timeout:
                    continue
                block = s.stats
                if block is not None and s.lanes_open:
                    # bytes on lanes do not show on the session's socket; the worker counts them, both ways
                    work = block.read() or {}
                    seen = work.get("bytes_in", 0) + work.get("bytes_out", 0)
                    now = time.monotonic()
                    if seen != s.lane_bytes_seen:
                        s.lane_bytes_seen, s.lane_active_at = seen, now
                    if now - s.lane_active_at < timeout:
                        continue
                if block is not None and session_stats.busy_seconds(block.read()) is not None:
                    continue  # a call is running on the GPU: the client waits for it, it is not idle
                with reg.lock:
                    proc = reg.workers.get(s.id)
                if proc is None or proc.poll() is not None:
                    continue
                reg.count("idle_ended")
                self.log.warn(f"ending idle session: no traffic for {info.idle_s:.0f} s "
                              f"(lease idle timeout {timeout:g} s)", session=s.id)
                try:
                    proc.terminate()
                except OSError:
                    pass
                threading.Thread(target=_kill_later, args=(proc,), daemon=True).start()

    def stop_workers(self) -> None:
        """End every worker: SIGTERM, then SIGKILL after a grace period."""
        with self.registry.lock:
            workers = dict(self.registry.workers)
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
        shutil.rmtree(self.ipc_dir, ignore_errors=True)


def _kill_later(proc: subprocess.Popen) -> None:
    try:
        proc.wait(WORKER_STOP_GRACE)
    except subprocess.TimeoutExpired:
        proc.kill()


def session_traffic(sess: Session, info, work: dict | None) -> tuple[int | None, int | None]:
    """A session's bytes in and out: its socket's (TCP_INFO), or, once lanes
    carry some of them (they do not show on that socket), the worker's own
    count of frame bytes, which includes the lanes', where that is more."""
    if info is None:
        return None, None
    if not sess.lanes_open or not work:
        return info.bytes_received, info.bytes_sent
    return max(info.bytes_received, work["bytes_in"]), max(info.bytes_sent, work["bytes_out"])


def nvml_path(driver: Driver) -> str:
    """The stand-in NVML beside the stand-in driver; else the NVML beside the
    driver's libcuda (its folder may not be on the loader's path), else by name."""
    if driver.is_standin:
        try:
            return str(paths.standin_nvml())
        except paths.NativeMissing:
            return paths.NVML_LIB
    beside = Path(driver.path).parent / paths.NVML_LIB
    return str(beside) if beside.is_file() else paths.NVML_LIB


# --- the orphan sweep ---------------------------------------------------------


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


def end_orphans(log: Logger) -> None:
    """At start: a worker still serving a client of a dead server holds GPU memory and
    a lease nobody can see; end it (its client sees the connection close)."""
    for pid, server_pid in orphaned_workers(paths.WORKER):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError as e:
            log.warn(f"cannot end orphaned worker {pid}: {e.strerror or e}", worker_pid=pid)
            continue
        log.warn(f"ended an orphaned worker whose server (pid {server_pid or '?'}) is gone", worker_pid=pid)
