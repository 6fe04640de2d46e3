"""Workers do not outlive their server (issue 18, finding 3).

A server that is SIGKILLed or OOM-killed cannot stop its workers; they used to
be re-parented to init and go on serving, unknown to the next server on the
port. A worker now asks the kernel for SIGKILL when its server goes
(PR_SET_PDEATHSIG) and exits at start if its parent is not the server pid it
was given (the server died before that)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from conftest import gpuwire_env, start_server
from gpuwire import paths
from test_server import good_session, unique_pid


def state(pid: int) -> str:
    """'gone', 'Z' (exited, not yet reaped) or a running state."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while state(pid) not in ("gone", "Z"):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def session_worker(srv) -> tuple[socket.socket, int]:
    sock, sid = good_session(srv, unique_pid())
    worker = int(srv.wait_for_log(r"session start.* worker_pid=(\d+)", session=sid).group(1))
    assert state(worker) not in ("gone", "Z")
    return sock, worker


def test_worker_dies_with_a_killed_server(tmp_path):
    srv = start_server(tmp_path / "server.log")
    sock = None
    try:
        sock, worker = session_worker(srv)  # a session that just waits
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(10)
        assert wait_gone(worker, 5), f"worker {worker} still runs 5 s after its server was SIGKILLed"
    finally:
        if sock is not None:
            sock.close()
        srv.stop()


def test_worker_whose_server_is_already_gone_exits_at_once():
    """--server-pid that is not the worker's parent: the server died before the
    worker could ask to die with it."""
    other = subprocess.Popen(["sleep", "30"])
    a, b = socket.socketpair()
    try:
        r = subprocess.run([str(paths.worker()), "--fd", str(b.fileno()), "--driver", "/nonexistent.so",
                            "--session", "7", "--server-pid", str(other.pid)],
                           pass_fds=(b.fileno(),), capture_output=True, text=True, timeout=30, env=gpuwire_env())
        assert r.returncode == 7, (r.returncode, r.stderr)
        assert f"the server (pid {other.pid}) is gone: exiting" in r.stderr, r.stderr
        for bad in ("0", "1", "-5", "12abc"):  # a value that names no process is refused, not taken as none
            r = subprocess.run([str(paths.worker()), "--fd", str(b.fileno()), "--driver", "/nonexistent.so",
                                "--server-pid", bad], pass_fds=(b.fileno(),), capture_output=True, text=True,
                               timeout=30, env=gpuwire_env())
            assert r.returncode == 2 and "--server-pid" in r.stderr, (bad, r.returncode, r.stderr)
    finally:
        other.kill()
        other.wait()
        a.close()
        b.close()


def test_next_server_ends_orphans_at_start(tmp_path):
    """Defence in depth for workers that outlived their server all the same (an
    older gpuwire, or the parent-death signal skipped): the next server started
    finds them (a gpuwire-worker whose parent is not the --server-pid it names)
    and ends them, so no session holds a GPU the new server cannot see.
    GPUWIRE_WORKER_NO_PDEATHSIG=1 (for this test only) makes such an orphan."""
    srv = start_server(tmp_path / "old.log", env={"GPUWIRE_WORKER_NO_PDEATHSIG": "1"})
    sock = worker = None
    try:
        sock, worker = session_worker(srv)
        srv.proc.send_signal(signal.SIGKILL)
        srv.proc.wait(10)
        assert not wait_gone(worker, 1.5), "the worker ended with its server although told not to"
        fresh = start_server(tmp_path / "new.log")
        try:
            fresh.wait_for_log(rf"ended an orphaned worker whose server \(pid {srv.proc.pid}\) is gone\" "
                               rf"worker_pid={worker}\b")
            assert wait_gone(worker, 5), f"orphan {worker} still runs"
        finally:
            fresh.stop()
    finally:
        if worker is not None and state(worker) not in ("gone", "Z"):
            os.kill(worker, signal.SIGKILL)
        if sock is not None:
            sock.close()
        srv.stop()
