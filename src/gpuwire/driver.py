"""Choosing the driver the workers execute calls on: the real NVIDIA driver or
the CPU stand-in (a test double).

Whether a driver works is asked of `gpuwire-worker --probe` in a child process,
so the server process itself never initialises CUDA.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path

from gpuwire import paths

PROBE_TIMEOUT = 60.0  # a real driver can take seconds to initialise

# Where NVIDIA drivers commonly live, tried after ld.so's cache.
_COMMON_DIRS = [
    "/usr/local/nvidia/lib64",
    "/usr/lib/x86_64-linux-gnu",
    "/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/lib",
    "/usr/lib/wsl/lib",
]


class DriverError(RuntimeError):
    pass


@dataclass
class Driver:
    kind: str            # "nvidia", "standin" or "path"
    path: Path
    driver_version: int
    device_count: int
    desc: str
    device_name: str = ""
    fallback_reason: str = ""  # why auto did not pick the real GPU

    @property
    def is_standin(self) -> bool:
        return self.kind == "standin"


def probe(path: Path | str, timeout: float = PROBE_TIMEOUT) -> dict:
    """Run `gpuwire-worker --probe --driver PATH`; returns its JSON object
    ({"ok": true, ...} or {"ok": false, "error": ...}), never raises for a bad driver."""
    worker = paths.worker()
    try:
        proc = subprocess.run([str(worker), "--probe", "--driver", str(path)], stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"driver probe timed out after {timeout:.0f} s"}
    except OSError as e:
        return {"ok": False, "error": f"could not run {worker}: {e}"}
    lines = [ln for ln in proc.stdout.decode("utf-8", "replace").splitlines() if ln.strip()]
    for line in reversed(lines):
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict) and "ok" in obj:
            return obj
    err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
    return {"ok": False, "error": f"driver probe exited with status {proc.returncode} and no JSON answer"
                                  + (f": {err[-1]}" if err else "")}


def _ldconfig_candidates() -> list[str]:
    for exe in ("/sbin/ldconfig", "/usr/sbin/ldconfig", "ldconfig"):
        try:
            out = subprocess.run([exe, "-p"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            continue
        arch = "x86-64" if platform.machine() == "x86_64" else ""
        found = []
        for line in out.splitlines():
            name, _, target = line.strip().partition(" => ")
            if name.startswith("libcuda.so.1 ") and (not arch or arch in name):
                found.append(target.strip())
        return found
    return []


def nvidia_candidates() -> list[Path]:
    """Existing real libcuda.so.1 files, most likely first, never gpuwire's own."""
    names = _ldconfig_candidates()
    for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") + _COMMON_DIRS:
        if d:
            names.append(os.path.join(d, "libcuda.so.1"))
    ours = {os.path.realpath(paths.native_dir() / paths.CLIENT_LIB)}
    seen: set[str] = set()
    result = []
    for n in names:
        real = os.path.realpath(n)
        if real in seen or real in ours or not os.path.isfile(real):
            continue
        seen.add(real)
        result.append(Path(n))
    return result


def _from_probe(kind: str, path: Path, answer: dict, reason: str = "") -> Driver:
    return Driver(kind=kind, path=path, driver_version=int(answer.get("driver_version", 0) or 0),
                  device_count=int(answer.get("device_count", 0) or 0), desc=str(answer.get("desc", "")),
                  device_name=str(answer.get("device_name", answer.get("name", "")) or ""),
                  fallback_reason=reason)


def find_nvidia() -> tuple[Driver | None, str]:
    """The first real driver that probes well with at least one device, or (None, reason)."""
    cands = nvidia_candidates()
    if not cands:
        return None, "no libcuda.so.1 found"
    reasons = []
    for path in cands[:3]:
        ans = probe(path)
        if ans.get("ok") and int(ans.get("device_count", 0) or 0) > 0:
            return _from_probe("nvidia", path, ans), ""
        reasons.append(f"{path}: {ans.get('error') or 'no CUDA devices'}")
    return None, "; ".join(reasons)


def standin() -> Driver:
    path = paths.standin_driver()
    ans = probe(path)
    if not ans.get("ok"):
        raise DriverError(f"the CPU stand-in driver {path} does not work: {ans.get('error')}")
    return _from_probe("standin", path, ans)


STANDIN_HINT = "--driver standin serves the CPU stand-in driver (a test double, no GPU) instead"


def resolve(spec: str, fallback: bool = False) -> Driver:
    """spec: auto | standin | nvidia | a path to a libcuda-compatible library.
    auto is the real NVIDIA driver; without one that works it raises DriverError,
    never serving the stand-in silently, unless `fallback` (gpuwire demo, which says so)."""
    if spec == "standin":
        return standin()
    if spec == "nvidia":
        drv, reason = find_nvidia()
        if drv is None:
            raise DriverError(f"no usable NVIDIA driver: {reason}")
        return drv
    if spec == "auto":
        drv, reason = find_nvidia()
        if drv is not None:
            return drv
        if not fallback:
            raise DriverError(f"no working NVIDIA driver ({reason}); {STANDIN_HINT}")
        drv = standin()
        drv.fallback_reason = reason
        return drv
    path = Path(spec).expanduser()
    if not path.is_file():
        raise DriverError(f"driver library {path} does not exist")
    path = path.resolve()
    ans = probe(path)
    if not ans.get("ok"):
        raise DriverError(f"driver library {path} does not work: {ans.get('error')}")
    return _from_probe("path", path, ans)


def describe(drv: Driver) -> str:
    """One human sentence saying what the server serves."""
    if drv.is_standin:
        head = "serving the CPU stand-in driver (a test double), not a GPU"
        if drv.fallback_reason:
            head = f"no usable NVIDIA driver ({drv.fallback_reason}); " + head.replace(", not a GPU", "")
        return head
    name = f" {drv.device_name}" if drv.device_name else ""
    return (f"serving {drv.device_count} GPU(s){name} through {drv.path} "
            f"({drv.desc or 'driver'}, CUDA driver API {drv.driver_version})")
