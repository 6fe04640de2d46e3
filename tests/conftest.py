"""Shared test fixtures: a `gpuwire server --driver standin` subprocess on a free
loopback port, and helpers to run commands through `gpuwire run` against it.
Here at tests/ so that both tests/unit/ and tests/e2e/ see them; helper modules
the tests import (control_plane, ...) live in tests/support/ (tests/README.md)."""

from __future__ import annotations

import glob
import os
import re
import signal
import site
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
PROGRAMS_DIR = ROOT / "build" / "programs"
sys.path.insert(0, str(SRC))  # the tests import gpuwire from this checkout, installed or not
sys.path.insert(0, str(ROOT / "tests" / "support"))  # helper modules: `from control_plane import ...`

from gpuwire import paths  # noqa: E402

GPUWIRE = [sys.executable, "-m", "gpuwire"]
SERVER_START_TIMEOUT = 90.0  # includes the worker's driver probe


def gpuwire_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for gpuwire subprocesses: this checkout's package, no
    gpuwire settings leaking in from the caller's environment."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("LD_AUDIT", "GPUWIRE_SERVER", "GPUWIRE_STATS", "GPUWIRE_LIBDIR")}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC)] + [p for p in [os.environ.get("PYTHONPATH")] if p])
    env["PYTHONUNBUFFERED"] = "1"
    # servers the tests start keep their content cache out of /var/cache and ~/.cache
    env.setdefault("GPUWIRE_CACHE_DIR", os.path.join(tempfile.gettempdir(), f"gpuwire-tests-cache-{os.getuid()}"))
    if extra:
        env.update(extra)
    return env


def free_port() -> int:
    """A loopback port with nothing listening on it (at the time of the call)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """A running `gpuwire server` subprocess whose log goes to a file."""

    def __init__(self, proc: subprocess.Popen, log_path: Path, host: str, port: int):
        self.proc = proc
        self.log_path = log_path
        self.host = host
        self.port = port

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_lines(self, session: int | str | None = None) -> list[str]:
        lines = self.log_text().splitlines()
        if session is None:
            return lines
        rx = re.compile(rf"(^| )session={session}( |$)")
        return [ln for ln in lines if rx.search(ln)]

    def wait_for_log(self, pattern: str, timeout: float = 15.0, session: int | str | None = None) -> re.Match:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log_lines(session):
                m = rx.search(line)
                if m:
                    return m
            if time.monotonic() > deadline:
                pytest.fail(f"server log has no line matching {pattern!r} within {timeout} s"
                            f"{f' for session {session}' if session is not None else ''}; log tail:\n"
                            + "\n".join(self.log_lines()[-40:]))
            time.sleep(0.05)

    def session_of_pid(self, pid: int, timeout: float = 15.0) -> int:
        """The session id the server gave the client that sent `pid` in its HELLO."""
        m = self.wait_for_log(rf"msg=\"session start\" session=(\d+) .*\bpid={pid}\b", timeout)
        return int(m.group(1))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_server(log_path: Path, driver: str = "standin", extra_args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None) -> ServerProcess:
    log = open(log_path, "wb")
    proc = subprocess.Popen(GPUWIRE + ["server", "--listen", "127.0.0.1:0", "--driver", driver,
                                       "--log-level", "DEBUG", *extra_args],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            env=gpuwire_env({"GPUWIRE_CACHE_DIR": str(log_path.parent / "cache"), **(env or {})}))
    log.close()
    rx = re.compile(r"listening on .* address=127\.0\.0\.1:(\d+) ")
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    port = None
    while port is None:
        m = rx.search(log_path.read_text(errors="replace"))
        if m:
            port = int(m.group(1))
        elif proc.poll() is not None:
            pytest.fail(f"gpuwire server exited with status {proc.returncode} before listening; its log:\n"
                        + log_path.read_text(errors="replace"))
        elif time.monotonic() > deadline:
            proc.kill()
            pytest.fail("gpuwire server did not start listening within "
                        f"{SERVER_START_TIMEOUT} s; its log:\n" + log_path.read_text(errors="replace"))
        else:
            time.sleep(0.05)
    # it says it listens: check it accepts (a bare connect-and-close is a harmless client)
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass
    return ServerProcess(proc, log_path, "127.0.0.1", port)


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> ServerProcess:
    """One stand-in server for the whole test session; its log is server.log in a temp dir."""
    srv = start_server(tmp_path_factory.mktemp("server") / "server.log")
    yield srv
    srv.stop()


def gw_run(cmd: list[str], server: str | None, stats: Path | None = None, timeout: float = 120.0,
           env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run cmd through `gpuwire run` (against `server`, an address, if given);
    fails the test if it runs past `timeout` instead of hanging."""
    args = GPUWIRE + ["run"]
    if server:
        args += ["--server", server]
    if stats:
        args += ["--stats", str(stats)]
    args += ["--", *cmd]
    try:
        return subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace",
                              timeout=timeout, env=gpuwire_env(env), cwd=cwd)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = (e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        pytest.fail(f"{' '.join(cmd)} through gpuwire run did not finish within {timeout} s\n"
                    f"stdout:\n{out}\nstderr:\n{err}")


def gw_python_client(server: str, source: str, ready: str = "ready",
                     env: dict[str, str] | None = None) -> subprocess.Popen:
    """A Python program (`source`, given to python -c) started through `gpuwire
    run` with pipes on stdin and stdout, once it has printed `ready` as its first
    line; the test fails with its stderr if it prints anything else or ends."""
    proc = subprocess.Popen(GPUWIRE + ["run", "--server", server, "--", sys.executable, "-c", source],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=gpuwire_env(env))
    line = proc.stdout.readline()
    if line.strip() != ready:
        proc.kill()
        _, err = proc.communicate(timeout=30)
        pytest.fail(f"the client did not start: {line!r}\n{err}")
    return proc


def explain(result: subprocess.CompletedProcess, server: ServerProcess | None = None) -> str:
    """Failure message: the command's output and the end of the server log."""
    text = (f"exit status {result.returncode}\n--- stdout ---\n{result.stdout}\n"
            f"--- stderr ---\n{result.stderr}")
    if server is not None:
        text += "\n--- server log (tail) ---\n" + "\n".join(server.log_lines()[-30:])
    return text


def built_programs() -> list[Path]:
    """Executables in build/programs (made by `make -C tests/programs`)."""
    if not PROGRAMS_DIR.is_dir():
        return []
    return sorted(p for p in PROGRAMS_DIR.iterdir() if p.is_file() and os.access(p, os.X_OK))


NOT_BUILT = "CUDA test programs are not built (build/programs): run ./scripts/setup or `make -C tests/programs`"


def client_api_digest() -> int:
    """GW_API_DIGEST of the generated op table, as a real client sends it in HELLO."""
    rx = re.compile(r"#\s*define\s+GW_API_DIGEST\s+\(?\s*(0[xX][0-9a-fA-F]+|\d+)")
    gen = ROOT / "native" / "generated"
    for header in sorted(gen.glob("*.h")) if gen.is_dir() else []:
        m = rx.search(header.read_text(errors="replace"))
        if m:
            return int(m.group(1), 0)
    pytest.fail(f"no `#define GW_API_DIGEST` found in {gen}/*.h (the generated op table)")


def native_client_lib() -> Path:
    return paths.NATIVE_DIR / paths.CLIENT_LIB


def nvrtc_library() -> str | None:
    """NVRTC for the tests that compile with it: GPUWIRE_TEST_NVRTC, the
    nvidia-cuda-nvrtc wheel the test extras install, else the toolkit's."""
    found = [os.environ.get("GPUWIRE_TEST_NVRTC", "")]
    for d in site.getsitepackages() + [site.getusersitepackages()]:
        found += glob.glob(d + "/nvidia/cu13/lib/libnvrtc.so.13") + glob.glob(d + "/nvidia/cuda_nvrtc/lib/libnvrtc.so*")
    found += glob.glob("/usr/local/cuda/lib64/libnvrtc.so.1*")
    return next((f for f in found if f and os.path.exists(f)), None)
