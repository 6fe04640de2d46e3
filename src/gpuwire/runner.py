"""`gpuwire run`: start a command with gpuwire's loader redirection in place.

It only sets the environment and exec's the command, so the command's exit
status is gpuwire run's. Standard library only.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from gpuwire import address, clientenv, paths


def server_address(flag: str | None, env: dict[str, str]) -> str:
    """--server, else $GPUWIRE_SERVER, else 127.0.0.1:7750, written in full (HOST:PORT,
    [IPV6]:PORT; several servers comma-separated, each so) so the client library gets
    the port spelled out. Raises ValueError (address.AddressError) with one line if malformed."""
    if flag:  # one server, or several: a,b (docs/multi-gpu.md)
        if len(flag.split(",")) > clientenv.SERVERS_MAX:
            raise ValueError(f"--server {flag}: at most {clientenv.SERVERS_MAX} servers")
        return ",".join(address.normalize(s.strip(), what="--server") for s in flag.split(","))
    text = env.get("GPUWIRE_SERVER") or address.DEFAULT_SERVER
    clientenv.check({"GPUWIRE_SERVER": text})  # the client library's own words for a bad value
    return ",".join(address.normalize(s.strip(), what="GPUWIRE_SERVER") for s in text.split(","))


def build_env(base: dict[str, str], server: str | None = None, stats: str | None = None,
              native_dir: Path | None = None, audit: Path | None = None, quiet: bool = False) -> dict[str, str]:
    env = dict(base)
    if quiet:  # no status line for long transfers or a queued lease (native/client/progress.c)
        env["GPUWIRE_PROGRESS"] = "0"
    native_dir = native_dir or paths.native_dir()
    audit = audit or paths.audit_module()
    existing = [p for p in env.get("LD_AUDIT", "").split(":") if p]
    if str(audit) not in existing:
        existing.append(str(audit))
    env["LD_AUDIT"] = ":".join(existing)
    env["GPUWIRE_LIBDIR"] = str(native_dir)
    # Triton (and torch.compile through it) looks for the driver on disk to link its
    # launchers against: point it at gpuwire's libcuda.so, unless the user chose one
    env.setdefault("TRITON_LIBCUDA_PATH", str(native_dir))
    env["GPUWIRE_SERVER"] = server_address(server, base)
    if stats:
        env["GPUWIRE_STATS"] = os.path.abspath(stats)  # the command may change directory
        if not os.path.isdir(os.path.dirname(env["GPUWIRE_STATS"])):
            raise ValueError(f"--stats {stats}: the folder {os.path.dirname(env['GPUWIRE_STATS'])} does not exist")
    # what the client library would refuse or ignore with a warning, refused here before the program starts
    clientenv.check(env)
    return env


def run(cmd: list[str], server: str | None = None, stats: str | None = None, quiet: bool = False) -> int:
    """Exec cmd; returns only on failure (127: not found, 126: not executable, 2: bad use)."""
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        print("gpuwire run: no command given (usage: gpuwire run [--server HOST:PORT] -- CMD ARGS...)",
              file=sys.stderr)
        return 2
    try:
        env = build_env(dict(os.environ), server, stats, quiet=quiet)
    except paths.NativeMissing as e:
        print(f"gpuwire run: {e}", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"gpuwire run: {e}", file=sys.stderr)
        return 2
    sys.stdout.flush()
    sys.stderr.flush()
    # Python ignores SIGPIPE and SIGXFSZ, and ignored signals survive exec: give
    # the command the defaults it would have had without gpuwire.
    for sig in ("SIGPIPE", "SIGXFSZ"):
        if hasattr(signal, sig):
            signal.signal(getattr(signal, sig), signal.SIG_DFL)
    try:
        os.execvpe(cmd[0], cmd, env)
    except FileNotFoundError:
        print(f"gpuwire run: {cmd[0]}: command not found", file=sys.stderr)
        return 127
    except PermissionError as e:
        print(f"gpuwire run: {cmd[0]}: cannot execute: {e.strerror}", file=sys.stderr)
        return 126
    except OSError as e:
        print(f"gpuwire run: {cmd[0]}: cannot execute: {e.strerror or e}", file=sys.stderr)
        return 126
