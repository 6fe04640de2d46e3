"""`gpuwire smi`: an nvidia-smi-like table of a server's GPUs, asked through
gpuwire's own client libraries (libnvidia-ml.so.1 and libcuda.so.1) by a
helper run under `gpuwire run` (smi_probe.py), so it shows what an
application on this machine would see.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from gpuwire import paths, runner

PROBE = Path(__file__).with_name("smi_probe.py")
PROBE_TIMEOUT = 120.0


def collect(server: str | None, token_file: str | None = None, cuda: bool = True,
            base_env: dict[str, str] | None = None) -> tuple[dict | None, str]:
    """(report, error text). The helper runs with its own environment: the
    audit module, the server, and no waiting behind an exclusive lease."""
    env = runner.build_env(dict(os.environ if base_env is None else base_env), server)
    env["GPUWIRE_NO_WAIT"] = "1"  # a monitor must not queue for a GPU
    if token_file:
        env["GPUWIRE_TOKEN_FILE"] = os.path.abspath(token_file)
    cmd = [sys.executable, str(PROBE)] + ([] if cuda else ["--no-cuda"])
    try:
        proc = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              errors="replace", timeout=PROBE_TIMEOUT)
    except subprocess.TimeoutExpired:
        return None, f"no answer within {PROBE_TIMEOUT:.0f} s"
    for line in reversed(proc.stdout.splitlines()):
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            return obj, proc.stderr.strip()
    return None, (proc.stderr.strip() or f"the helper exited with status {proc.returncode} and no answer")


def _mib(n: int | None) -> str:
    return "N/A" if n is None else f"{n // (1 << 20)}MiB"


def _na(v, unit: str = "") -> str:
    return "N/A" if v is None else f"{v}{unit}"


def _cuda_version(v: int | None) -> str:
    return "N/A" if not v else f"{v // 1000}.{(v % 1000) // 10}"


def render(report: dict, server: str) -> str:
    nv = report.get("nvml") or {}
    cu = report.get("cuda") or {}
    lines = [f"gpuwire smi: {server}  {time.strftime('%a %b %d %H:%M:%S %Y')}"]
    lines.append(f"Driver Version: {_na(nv.get('driver_version'))}   "
                 f"CUDA Version: {_cuda_version(nv.get('cuda_version'))}   "
                 f"NVML Version: {_na(nv.get('nvml_version'))}")
    if nv.get("error"):
        lines.append(f"NVML: {nv['error']}")
    by_uuid = {d.get("uuid"): d["ordinal"] for d in cu.get("devices", []) if d.get("uuid")}
    head = f"{'GPU':>3}  {'Name':<26} {'Bus-Id':<16} {'Memory-Usage':>21} {'Util':>5} {'Temp':>5} " \
           f"{'Power':>15} {'CUDA':>4}"
    rule = "-" * len(head)
    lines += [rule, head, f"{'':>3}  {'UUID':<43} {'Clocks (gr/sm/mem MHz)':>22} {'Compute M.':>15}", rule]
    for g in nv.get("gpus", []):
        if g.get("error"):
            lines.append(f"{g['index']:>3}  {g['error']}")
            continue
        mem = g.get("memory") or {}
        usage = f"{_mib(mem.get('used'))} / {_mib(mem.get('total'))}"
        util = (g.get("utilization") or {}).get("gpu")
        p, lim = g.get("power_mw"), g.get("power_limit_mw")
        power = f"{_na(None if p is None else p // 1000, 'W')} / {_na(None if lim is None else lim // 1000, 'W')}"
        cuda_ord = by_uuid.get(g.get("uuid"))
        lines.append(f"{g['index']:>3}  {str(g.get('name') or 'N/A')[:26]:<26} {str(g.get('bus_id') or 'N/A'):<16} "
                     f"{usage:>21} {_na(util, '%'):>5} {_na(g.get('temperature'), 'C'):>5} {power:>15} "
                     f"{'-' if cuda_ord is None else cuda_ord:>4}")
        clk = g.get("clocks_mhz") or {}
        clocks = "/".join(_na(clk.get(k)) for k in ("graphics", "sm", "memory"))
        lines.append(f"{'':>3}  {str(g.get('uuid') or 'N/A'):<43} {clocks:>22} {_na(g.get('compute_mode')):>15}")
    lines.append(rule)
    if cu.get("error"):
        lines.append(f"CUDA: {cu['error']}")
    elif cu:
        lines.append(f"CUDA: {len(cu.get('devices', []))} device(s) visible to programs here "
                     f"(CUDA_VISIBLE_DEVICES applies), driver API {cu.get('driver_version')}")
    lines.append("Processes (on the server):")
    procs = [(g["index"], p) for g in nv.get("gpus", []) for p in (g.get("processes") or [])]
    if not procs:
        lines.append("  No running processes found")
    else:
        lines.append(f"  {'GPU':>3}  {'PID':>8}  {'Process name':<32} {'GPU Memory':>10}")
        for idx, p in procs:
            lines.append(f"  {idx:>3}  {p['pid']:>8}  {str(p.get('name') or 'N/A')[:32]:<32} "
                         f"{_mib(p.get('used_memory')):>10}")
    return "\n".join(lines)


def main(server: str | None, token_file: str | None = None, as_json: bool = False, cuda: bool = True) -> int:
    try:
        address = runner.server_address(server, dict(os.environ))
        report, err = collect(address, token_file, cuda)
    except paths.NativeMissing as e:
        print(f"gpuwire smi: {e}", file=sys.stderr)
        return 1
    except ValueError as e:
        print(f"gpuwire smi: {e}", file=sys.stderr)
        return 2
    if report is None:
        print(f"gpuwire smi: cannot query {address}: {err}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(report, indent=1))
    else:
        print(render(report, address))
    nv = report.get("nvml") or {}
    if nv.get("error"):
        if err:
            print(err, file=sys.stderr)
        return 1
    return 0
