"""`gpuwire demo`: a server and a client on this machine, one CUDA program between them.

The server runs in a thread of this process on an ephemeral loopback port (its
log goes to a temporary file, shown if something fails); the program runs through
`gpuwire run` exactly as a user would run it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from gpuwire import driver as drivers
from gpuwire import paths
from gpuwire.config import ServerConfig
from gpuwire.log import Logger
from gpuwire.server import Server

DEMO_PROGRAM = "vector_add_shared"


def _say(text: str) -> None:
    print(f"gpuwire demo: {text}", flush=True)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def summarize_stats(stats: dict) -> str:
    return (f"{stats.get('calls', '?')} driver calls, {stats.get('round_trips', '?')} round trips, "
            f"{_size(int(stats.get('bytes_to_server', 0)))} to the server, "
            f"{_size(int(stats.get('bytes_from_server', 0)))} back")


def _default_program() -> Path | None:
    """build/programs' CUDA program in a checkout that built it, else the driver-API
    program the native build makes (what an installed wheel has)."""
    d = paths.programs_dir()
    if d and (d / DEMO_PROGRAM).is_file():
        return d / DEMO_PROGRAM
    native = paths.native_dir() / "gpuwire-demo"
    return native if native.is_file() else (d / DEMO_PROGRAM if d else None)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"


def run_demo(program: str | None = None, driver_spec: str = "auto") -> int:
    prog = Path(program) if program else _default_program()
    if prog is None or not prog.is_file():
        where = prog or f"build/programs/{DEMO_PROGRAM}"
        print(f"gpuwire demo: the demo program {where} is not built.\n"
              f"  Build it in the gpuwire checkout with ./scripts/setup (or `make -C tests/programs`),\n"
              f"  or name another CUDA program: gpuwire demo --program PATH", file=sys.stderr)
        return 2
    try:
        paths.audit_module()
        paths.client_lib()
        drv = drivers.resolve(driver_spec, fallback=True)  # a demo runs anywhere, and says which
    except (paths.NativeMissing, drivers.DriverError) as e:
        print(f"gpuwire demo: {e}", file=sys.stderr)
        return 1

    if drv.is_standin:
        why = f" ({drv.fallback_reason})" if drv.fallback_reason else ""
        _say(f"no GPU on this machine{why}: using the CPU stand-in driver (a test double)")
    else:
        name = drv.device_name or drv.desc or "NVIDIA GPU"
        _say(f"serving the real GPU: {name} ({drv.device_count} device(s), {drv.desc}, "
             f"driver API {drv.driver_version})")

    with tempfile.TemporaryDirectory(prefix="gpuwire-demo-") as tmp:
        log_path = Path(tmp) / "server.log"
        stats_path = Path(tmp) / "stats.json"
        with open(log_path, "w") as log_file:
            server = Server(ServerConfig(listen="127.0.0.1:0", lease_idle_timeout=0.0), drv,
                            Logger(log_file, level="DEBUG"))
            server.bind()
            thread = threading.Thread(target=server.serve_forever, daemon=True, name="gpuwire-demo-server")
            thread.start()
            _say(f"server listening on {server.address_text}; running {prog} through `gpuwire run`")
            print("-" * 60, flush=True)
            try:
                cmd = [sys.executable, "-m", "gpuwire", "run", "--server", server.address_text,
                       "--stats", str(stats_path), "--", str(prog)]
                env = dict(os.environ)
                env["PYTHONPATH"] = os.pathsep.join(
                    [str(paths.PACKAGE_DIR.parent)] + [p for p in [env.get("PYTHONPATH")] if p])
                status = subprocess.call(cmd, env=env)
                if status < 0:  # killed by a signal: report it the way a shell does
                    status = 128 - status
            finally:
                print("-" * 60, flush=True)
                server.stop()
                thread.join(timeout=5)
        if status == 0:
            _say(f"{prog.name} exited with status 0")
        else:
            _say(f"{prog.name} FAILED with status {status}; last lines of the server log:")
            print(_tail(log_path), flush=True)
        try:
            stats = json.loads(stats_path.read_text())
            _say("stats: " + summarize_stats(stats))
        except (OSError, ValueError) as e:
            _say(f"no stats from the client library ({e})")
    return status
