"""Runs the benchmark suite for bench/run: every benchmark natively, through gpuwire on
loopback and through gpuwire behind gpuwire-netem paths; counts round trips per unit of work
(from GPUWIRE_STATS of two --exact runs on loopback); writes one JSON file and a markdown
table with the ratio to native and, beside each emulated measurement, the model
    native + round_trips x RTT + bytes / bandwidth.
Standard library only. Every case has a timeout and the whole suite a deadline; a failure or
a skipped case is recorded and the suite goes on."""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
MODES = ["h2d_pageable", "d2h_pageable", "h2d_pinned", "d2h_pinned"]
SYNC_PHASES = ["stream_sync", "device_sync", "d2h_4B", "launch_sync"]


@dataclass
class Path_:
    name: str            # native, loopback, or the emulated path's label
    server: str | None   # gpuwire server address (None: native)
    rtt_s: float = 0.0
    bw_bytes_s: float = 0.0  # 0: unlimited

    @property
    def kind(self) -> str:
        return "native" if self.server is None else "loopback" if self.name == "loopback" else "emulated"


@dataclass
class Row:
    """One line of the table: a metric, as seconds per unit of work, and how to show it."""
    label: str
    probe: str                                # key into the benchmark's probes ("self": the run itself)
    per_unit: Callable[[dict], float | None]  # result JSON -> seconds per unit
    show: Callable[[float], str]              # seconds per unit -> text
    rate: bool                                # a throughput (ratio shown as % of native)
    # round trips per unit that the probes leave out: the run's one synchronize per batch
    extra_rt: Callable[[dict], float] = lambda r: 0.0


@dataclass
class Bench:
    name: str
    cmd: list[str]                            # program (C binary or python script)
    args: Callable[[str, bool], list[str]]    # (path kind, standin) -> arguments
    probes: dict[str, tuple[list[str], list[str], int]]  # name -> (args for N units, args for 0, N)
    rows: list[Row]
    python: bool = False
    limit_s: float = 60.0
    app_syncs: Callable[[dict], float | None] = lambda r: None
    native_only_output_check: str | None = None  # result key compared with native (decode sha)
    # native and loopback runs taken in turn this many times, the median run kept: for short
    # benchmarks whose native rate moves between processes on a shared machine
    turns: int = 1


def _get(key: str, scale: float = 1.0, invert: bool = False):
    def f(r: dict):
        v = r.get(key)
        if not isinstance(v, (int, float)) or v <= 0:
            return None
        return 1.0 / v if invert else v * scale
    return f


def _bw(mode: str, size: str):
    def f(r: dict):
        for x in r.get("results", []):
            if x.get("mode") == mode and x.get("size") == size and x.get("gbps"):
                return x["bytes"] / (x["gbps"] * 1e9)
        return None
    return f


def _bw_extra(r: dict, mode: str, size: str) -> float:
    """The synchronize after each batch of copies, per copy (the probes count it per copy)."""
    for x in r.get("results", []):
        if x.get("mode") == mode and x.get("size") == size:
            return 1 / x["copies_per_rep"]
    return 0.0


def _sizes(standin: bool) -> list[str]:
    return ["1M", "4M"] if standin else ["1M", "16M", "256M", "1G"]


def _size_name(s: str) -> str:
    return s[:-1] + ("GiB" if s.endswith("G") else "MiB")


def benches(build: Path, python: str, standin: bool) -> list[Bench]:
    b = []

    def launch_args(kind, standin):
        if standin:
            return ["--launches", "20000", "--reps", "3", "--max-seconds", "1"]
        return ["--launches", "200000", "--reps", "3", "--max-seconds", "3"]
    b.append(Bench("launch_throughput", [str(build / "launch_throughput")], launch_args,
                   {"launch": (["--exact", "2000"], ["--exact", "1000"], 1000)},
                   [Row("launches/s", "launch", _get("launches_per_s", invert=True),
                        lambda t: f"{1 / t:,.0f}", True, extra_rt=lambda r: 1 / r["launches"])],
                   app_syncs=lambda r: 1 / r["launches"] if r.get("launches") else None,
                   turns=1 if standin else 3))

    def sync_args(kind, standin):
        if standin:
            return ["--iters", "200", "--max-seconds", "0.3"]
        return ["--iters", "2000", "--max-seconds", "1" if kind != "emulated" else "0.8"]
    b.append(Bench("sync_cost", [str(build / "sync_cost")], sync_args,
                   {p: (["--exact", "100", "--phases", p], ["--exact", "0", "--phases", "none"], 100)
                    for p in SYNC_PHASES},
                   [Row(f"{p} µs", p, _get(f"{p}_us", 1e-6), lambda t: f"{t * 1e6:.1f}", False)
                    for p in SYNC_PHASES],
                   app_syncs=lambda r: 1.0))

    sizes = _sizes(standin)

    def bw_args(kind, standin):
        if standin:
            return ["--sizes", ",".join(sizes), "--reps", "2", "--max-seconds", "0.3"]
        return ["--sizes", ",".join(sizes), "--reps", "5" if kind != "emulated" else "2",
                "--max-seconds", "1.5" if kind != "emulated" else "1"]
    bw_probes = {f"{m}_{s}": (["--exact", "1", "--modes", m, "--sizes", s], ["--exact", "0", "--modes", m, "--sizes", "1M"], 1)
                 for s in sizes for m in MODES}
    b.append(Bench("bandwidth", [str(build / "bandwidth")], bw_args, bw_probes,
                   [Row(f"{m} {_size_name(s)} GB/s", f"{m}_{s}", _bw(m, _size_name(s)),
                        (lambda size: lambda t: f"{size / t / 1e9:.2f}")(_bytes(s)), True,
                        extra_rt=(lambda m, s: lambda r: _bw_extra(r, m, s))(m, _size_name(s)))
                    for s in sizes for m in MODES], limit_s=90))
    if standin:
        return b

    py = [python]
    b.append(Bench("torch_startup", py + [str(HERE / "torch_startup.py")], lambda k, s: [], {},
                   [Row("import torch + first CUDA tensor s", "self", _get("total_s"), lambda t: f"{t:.2f}", False)],
                   python=True, limit_s=120))
    b.append(Bench("torch_small_ops", py + [str(HERE / "torch_small_ops.py")],
                   lambda k, s: ["--ops", "10000", "--max-seconds", "20" if k != "emulated" else "4"],
                   {"op": (["--exact", "1000"], ["--exact", "0"], 1000)},
                   [Row("µs/op", "op", _get("us_per_op", 1e-6), lambda t: f"{t * 1e6:.2f}", False,
                        extra_rt=lambda r: 1 / r["ops"])],
                   python=True, limit_s=120, app_syncs=_get("app_syncs_per_op")))
    b.append(Bench("torch_train_step", py + [str(HERE / "torch_train_step.py")],
                   lambda k, s: (["--steps", "10", "--warmup", "2", "--max-seconds", "20"] if k != "emulated"
                                 else ["--steps", "10", "--warmup", "1", "--max-seconds", "8"]),
                   {"step": (["--exact", "2", "--warmup", "1"], ["--exact", "0", "--warmup", "1"], 2)},
                   [Row("step ms", "step", _get("median_step_ms", 1e-3), lambda t: f"{t * 1e3:.1f}", False)],
                   python=True, limit_s=150, app_syncs=_get("app_syncs_per_step")))

    def decode(name, extra):
        return Bench(name, py + [str(HERE / "torch_decode.py")] + extra,
                     lambda k, s: (["--tokens", "256", "--max-seconds", "30"] if k != "emulated"
                                   else ["--tokens", "256", "--warmup", "2", "--max-seconds", "8"]),
                     {"token": (["--exact", "16", "--warmup", "2"], ["--exact", "0", "--warmup", "2"], 16)},
                     [Row("tokens/s", "token", _get("tokens_per_s", invert=True), lambda t: f"{1 / t:.1f}", True)],
                     python=True, limit_s=150, app_syncs=_get("app_syncs_per_token"),
                     native_only_output_check="sha256")
    b.append(decode("torch_decode", []))
    # the same model with FlashAttention kernels: PyTorch's own pick on the H100
    # (cuDNN) NVRTC-compiles a plan per token, so the row above measures mostly
    # that compiler; this one measures decoding
    b.append(decode("torch_decode_flash", ["--attention", "flash"]))
    # Hugging Face transformers' own generate() (issue 20's second benchmark;
    # needs transformers on the machine, as the GPU machine has)
    b.append(Bench("hf_generate", py + [str(HERE / "hf_generate.py")],
                   lambda k, s: (["--tokens", "128", "--max-seconds", "40"] if k != "emulated"
                                 else ["--tokens", "64", "--warmup", "2", "--max-seconds", "15"]),
                   {"token": (["--exact", "32", "--warmup", "2"], ["--exact", "0", "--warmup", "2"], 32)},
                   [Row("tokens/s", "token", _get("tokens_per_s", invert=True), lambda t: f"{1 / t:.1f}", True)],
                   python=True, limit_s=180, native_only_output_check="sha256"))
    return b


def _bytes(s: str) -> int:
    return int(s[:-1]) << (30 if s.endswith("G") else 20)


# ---- running ----

class Runner:
    def __init__(self, args, python: str):
        self.args = args
        self.python = python
        self.deadline = args.deadline
        self.tmp = Path(tempfile.mkdtemp(prefix="gpuwire-bench-"))
        self.logdir = Path(args.logdir) if args.logdir else None
        self.n = 0

    def remaining(self) -> float:
        return self.deadline - time.time()

    def run(self, label: str, cmd: list[str], path: Path_, limit_s: float) -> dict:
        """Runs cmd on path; returns {ok, error, result, stats, wall_s}."""
        self.n += 1
        rec: dict = {"ok": False, "error": None, "result": None, "stats": None, "wall_s": None}
        left = self.remaining() - 5
        if left < 10:
            rec["error"] = "skipped: suite time budget spent"
            print(f"bench: {label} [{path.name}]: skipped (time budget)", flush=True)
            return rec
        timeout = min(limit_s, left)
        stats = self.tmp / f"stats-{self.n}.json"
        full = list(cmd)
        if path.server is not None:
            full = self.args.nogpu + [self.python, "-m", "gpuwire", "run", "--server", path.server,
                                      "--stats", str(stats), "--"] + full
        rec["cmd"] = " ".join(full)
        t0 = time.monotonic()
        try:
            p = subprocess.Popen(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 start_new_session=True, cwd=HERE)
            try:
                out, err = p.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                out, err = p.communicate()
                rec["error"] = f"timed out after {timeout:.0f} s"
        except OSError as e:
            out, err = "", str(e)
            rec["error"] = f"cannot run: {e}"
            p = None
        rec["wall_s"] = round(time.monotonic() - t0, 3)
        if self.logdir:
            safe = label.replace("/", "_").replace(" ", "_")
            (self.logdir / f"{safe}.{path.name}.log").write_text(f"$ {rec.get('cmd')}\n--- stdout\n{out}\n--- stderr\n{err}")
        for line in reversed(out.splitlines()):
            if line.startswith("{"):
                try:
                    rec["result"] = json.loads(line)
                except ValueError:
                    pass
                break
        if rec["error"] is None:
            if p is not None and p.returncode != 0:
                last = err.strip().splitlines()[-1:] if err.strip() else []
                rec["error"] = f"exit status {p.returncode}" + (f": {last[0][:200]}" if last else "")
            elif rec["result"] is None:
                rec["error"] = "no JSON result line"
        if rec["result"] and rec["result"].get("error"):
            rec["error"] = f"{rec['error'] or 'failed'}: {rec['result']['error']}"
        if rec["error"] and err.strip():
            rec["stderr_tail"] = err.strip().splitlines()[-8:]
        try:
            st = json.loads(stats.read_text())
            # calls by function: only the 25 most frequent (where a hot loop's calls go)
            top = sorted(st.pop("by_function", {}).items(), key=lambda kv: -kv[1])[:25]
            rec["stats"] = dict(st, top_functions=dict(top))
        except (OSError, ValueError):
            pass
        rec["ok"] = rec["error"] is None
        rt = rec["stats"]["round_trips"] if rec["stats"] else "-"
        print(f"bench: {label} [{path.name}]: {'ok' if rec['ok'] else 'FAILED: ' + str(rec['error'])} "
              f"({rec['wall_s']} s, round trips {rt})", flush=True)
        return rec


def _median_run(recs: list[dict], per_unit) -> dict:
    """Of one path's turns, the run with the median value (of an even count the slower
    middle one; a failed run counts only when all failed); every turn's value is kept in it."""
    if len(recs) == 1:
        return recs[0]
    good = [(per_unit(r["result"]), r) for r in recs if r.get("ok") and r.get("result")]
    good = [(v, r) for v, r in good if v is not None]
    if not good:
        return recs[-1]
    good.sort(key=lambda vr: vr[0])
    pick = dict(good[len(good) // 2][1])
    pick["turns_seconds_per_unit"] = [v for v, _ in good]
    pick["turns_failed"] = len(recs) - len(good)
    return pick


def _per_unit_from_probes(full: dict, zero: dict, units: int) -> dict | None:
    if not (full.get("stats") and zero.get("stats")) or not full["ok"] or not zero["ok"]:
        return None
    f, z = full["stats"], zero["stats"]
    return {"round_trips": (f["round_trips"] - z["round_trips"]) / units,
            "bytes_to_server": (f["bytes_to_server"] - z["bytes_to_server"]) / units,
            "bytes_from_server": (f["bytes_from_server"] - z["bytes_from_server"]) / units}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", required=True)
    ap.add_argument("--md", required=True)
    ap.add_argument("--build", required=True, help="folder with the C benchmarks")
    ap.add_argument("--server", required=True, help="gpuwire server, loopback")
    ap.add_argument("--emulated", action="append", default=[],
                    help="LABEL=HOST:PORT:RTT_US:MBPS, a gpuwire-netem in front of the server")
    ap.add_argument("--nogpu", default="", help="wrapper for the gpuwire client (tests/gpu/nogpu)")
    ap.add_argument("--standin", action="store_true")
    ap.add_argument("--deadline", type=float, default=time.time() + 420, help="epoch seconds")
    ap.add_argument("--only", default="", help="comma-separated benchmark names")
    ap.add_argument("--logdir", default="")
    ap.add_argument("--command", default="")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--netem", default="", help="gpuwire-netem binary, for the emulator check")
    args = ap.parse_args()
    args.nogpu = [args.nogpu] if args.nogpu else []
    args.build = str(Path(args.build).resolve())
    # the runs start in bench/: the gpuwire package must be found from there
    src = str(HERE.parent / "src")
    os.environ["PYTHONPATH"] = os.pathsep.join([src] + [str(Path(p).resolve()) for p in
                                                       os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    if args.logdir:
        Path(args.logdir).mkdir(parents=True, exist_ok=True)

    paths = ([] if args.standin else [Path_("native", None)]) + [Path_("loopback", args.server)]
    for spec in args.emulated:
        label, _, rest = spec.partition("=")
        host, port, rtt, mbps = rest.split(":")
        paths.append(Path_(label, f"{host}:{port}", float(rtt) * 1e-6, float(mbps) * 1e6 / 8))
    loop = paths[1] if not args.standin else paths[0]

    allb = benches(Path(args.build), args.python, args.standin)
    if args.only:
        keep = set(args.only.split(","))
        allb = [b for b in allb if b.name in keep]
    runner = Runner(args, args.python)
    t_start = time.time()
    emulator = calibrate(args.netem, paths) if args.netem and len(paths) > 2 - args.standin else {}
    runs: dict[str, dict[str, dict]] = {b.name: {} for b in allb}
    probes: dict[str, dict] = {b.name: {} for b in allb}

    def run_once(b: Bench, path: Path_) -> dict:
        return runner.run(b.name, b.cmd + b.args(path.kind, args.standin), path,
                          b.limit_s if path.kind != "native" else min(b.limit_s, 120))

    def run_path(path: Path_):
        for b in allb:
            runs[b.name][path.name] = run_once(b, path)

    def run_in_turns(pair: list[Path_]):
        """Each benchmark on native then loopback, back to back (b.turns times, median kept),
        so a ratio compares runs minutes apart at most, not a whole suite apart."""
        for b in allb:
            recs: dict[str, list[dict]] = {p.name: [] for p in pair}
            for _ in range(b.turns):
                for path in pair:
                    recs[path.name].append(run_once(b, path))
            for name, got in recs.items():
                runs[b.name][name] = _median_run(got, b.rows[0].per_unit)

    def run_probes():
        for b in allb:
            zeros: dict[tuple, dict] = {}
            for pname, (full_args, zero_args, units) in b.probes.items():
                key = tuple(zero_args)
                if key not in zeros:
                    zeros[key] = runner.run(f"{b.name} probe zero", b.cmd + zero_args, loop, b.limit_s)
                full = runner.run(f"{b.name} probe {pname}", b.cmd + full_args, loop, b.limit_s)
                per = _per_unit_from_probes(full, zeros[key], units)
                probes[b.name][pname] = per or {"error": full.get("error") or zeros[key].get("error")
                                                or "no GPUWIRE_STATS"}
            if any(r.probe == "self" for r in b.rows):
                st = runs[b.name].get(loop.name, {}).get("stats")
                if st:
                    probes[b.name]["self"] = {k: st[k] for k in ("round_trips", "bytes_to_server", "bytes_from_server")}

    # Most important first: a spent budget skips the slowest emulated paths last.
    run_in_turns(paths[: 1 if args.standin else 2])
    run_probes()
    for path in paths[1 if args.standin else 2:]:
        run_path(path)

    report = build_report(args, paths, allb, runs, probes, t_start)
    report["emulator_check"] = emulator
    extra_md = ""
    if "model_load" in args.only.split(","):  # its own server, cache folder and 1 Gbit/s path
        report["model_load"], extra_md = run_model_load(args)
    Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    Path(args.md).write_text(markdown(report) + extra_md)
    failed = sum(1 for b in runs.values() for r in b.values() if not r["ok"])
    print(f"bench: {sum(len(b) for b in runs.values())} runs, {failed} failed or skipped, "
          f"{time.time() - t_start:.0f} s; wrote {args.json} and {args.md}", flush=True)
    return 0


def run_model_load(args) -> tuple[dict, str]:
    """bench/model_load.py (issue 5: content-addressed transfers), within the suite's deadline."""
    out = Path(args.json).with_name("model_load.json")
    cmd = [args.python, str(HERE / "model_load.py"), "--out", str(out), "--python", args.python]
    cmd += ["--nogpu", args.nogpu[0]] if args.nogpu else []
    cmd += ["--netem", args.netem] if args.netem else []
    cmd += ["--standin", "--size-gb", "0.2"] if args.standin else []
    try:
        subprocess.run(cmd, timeout=max(60.0, args.deadline - time.time()), cwd=HERE)
        return json.loads(out.read_text()), "\n" + out.with_suffix(".md").read_text()
    except (OSError, ValueError, subprocess.TimeoutExpired) as e:
        return {"error": f"model_load: {e}"}, f"\nmodel_load failed: {e}\n"


# ---- emulator check ----

def calibrate(netem: str, paths: list[Path_]) -> dict:
    """The emulator's own cost on each emulated path (bench/netem_check.py)."""
    from netem_check import check

    out = check(netem, [(p.name, p.rtt_s, p.bw_bytes_s * 8 / 1e6) for p in paths if p.kind == "emulated"])
    print(f"bench: emulator check (median ping-pong): {out}", flush=True)
    return out


# ---- report ----

def _sh(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def build_report(args, paths, allb, runs, probes, t_start) -> dict:
    base_name = "loopback" if args.standin else "native"
    rows = []
    for b in allb:
        for row in b.rows:
            base_rec = runs[b.name].get(base_name, {})
            base = row.per_unit(base_rec["result"]) if base_rec.get("ok") else None
            pu = probes[b.name].get(row.probe, {})
            line = {"bench": b.name, "metric": row.label, "rate": row.rate, "base": base_name,
                    "per_unit": pu, "cells": {}}
            loop_rec = runs[b.name].get("loopback", {})
            if loop_rec.get("ok"):
                line["app_syncs_per_unit"] = b.app_syncs(loop_rec["result"])
                if "round_trips" in pu:
                    line["rt_per_unit"] = pu["round_trips"] + row.extra_rt(loop_rec["result"])
            for path in paths:
                rec = runs[b.name].get(path.name, {})
                cell: dict = {}
                t = row.per_unit(rec["result"]) if rec.get("ok") and rec.get("result") else None
                if t is None:
                    cell["error"] = rec.get("error") or "no value"
                else:
                    cell["seconds_per_unit"] = t
                    cell["text"] = row.show(t)
                    if base:
                        cell["ratio"] = base / t if row.rate else t / base
                if path.kind == "emulated" and base and "round_trips" in pu and rec.get("ok"):
                    bw = (pu["bytes_to_server"] + pu["bytes_from_server"]) / path.bw_bytes_s if path.bw_bytes_s else 0
                    rt = pu["round_trips"] + row.extra_rt(rec["result"])
                    cell["model_round_trips_per_unit"] = rt
                    m = base + rt * path.rtt_s + bw
                    cell["model_seconds_per_unit"] = m
                    cell["model_text"] = row.show(m)
                if b.native_only_output_check and rec.get("ok"):
                    cell["output_matches_native"] = _same_output(runs[b.name].get(base_name), rec)
                line["cells"][path.name] = cell
            rows.append(line)
    card = _sh(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"])
    return {
        "date": time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(t_start)),
        "card": card or ("CPU stand-in (test double)" if args.standin else "unknown"),
        "host": platform.node(), "command": args.command,
        # the GPU machine's copy of the tree may carry a stale .git: the caller says
        "commit": os.environ.get("GPUWIRE_COMMIT") or _sh(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"]),
        "standin": args.standin,
        "paths": [{"name": p.name, "server": p.server, "rtt_ms": p.rtt_s * 1e3,
                   "bandwidth_gbit_s": p.bw_bytes_s * 8 / 1e9} for p in paths],
        "duration_s": round(time.time() - t_start, 1),
        "rows": rows, "runs": runs, "probes": probes,
    }


def _same_output(native: dict | None, rec: dict):
    if not native or not native.get("ok"):
        return None
    a, b = native["result"], rec["result"]
    if a.get("tokens") == b.get("tokens"):
        return a.get("sha256") == b.get("sha256")
    if a.get("sha256_16") and b.get("sha256_16"):
        return a["sha256_16"] == b["sha256_16"]  # a shortened run: its first 16 tokens
    return None


def _fmt_ratio(ratio: float, rate: bool) -> str:
    return f"{ratio * 100:.0f}%" if rate else f"{ratio:.2f}×"


def _num(v, fmt="{:.2f}") -> str:
    return "-" if v is None else fmt.format(v)


def _bytes_text(v: float) -> str:
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(v) >= div:
            return f"{v / div:.1f} {unit}"
    return f"{v:.0f} B"


def markdown(rep: dict) -> str:
    paths = rep["paths"]
    emu = [p for p in paths if p["server"] and p["name"] != "loopback"]
    out = ["# gpuwire benchmarks", "",
           f"- date: {rep['date']}; card: {rep['card']}; host: {rep['host']}; commit: {rep['commit'] or '?'}",
           f"- command: `{rep['command']}`; suite time {rep['duration_s']} s"]
    for p in emu:
        out.append(f"- {p['name']}: gpuwire-netem, RTT {p['rtt_ms']:g} ms, {p['bandwidth_gbit_s']:g} Gbit/s each way")
    chk = rep.get("emulator_check") or {}
    if chk:
        parts = [f"{k[:-3]} path {v} ms" for k, v in chk.items() if k.endswith("_ms") and k != "loopback_tcp_ms"]
        out.append(f"- emulator check, median 1-byte ping-pong: {', '.join(parts)}; plain loopback TCP "
                   f"{chk.get('loopback_tcp_ms')} ms")
    base = "loopback" if rep["standin"] else "native"
    out += ["",
            f"Ratios are to {base}: % of its throughput for rates, × its time for times. rt/unit, bytes/unit: "
            "round trips and bytes (both ways) per unit of work (launch, op, copy, step, token), counted "
            "on loopback from GPUWIRE_STATS of two --exact runs. Emulated cells: measured (ratio) "
            f"[model = {base} + rt × RTT + bytes / bandwidth].", ""]
    cols = [p["name"] for p in paths]
    head = ["benchmark", "metric"] + cols + ["rt/unit", "app syncs/unit", "bytes/unit"]
    out.append("| " + " | ".join(head) + " |")
    out.append("|" + "---|" * len(head))
    for r in rep["rows"]:
        cells = []
        for name in cols:
            c = r["cells"].get(name, {})
            if "text" not in c:
                cells.append("skipped" if str(c.get("error", "")).startswith("skipped") else "FAIL")
                continue
            t = c["text"]
            if name != base and "ratio" in c:
                t += f" ({_fmt_ratio(c['ratio'], r['rate'])})"
            if "model_text" in c:
                t += f" [{c['model_text']}]"
            if c.get("output_matches_native") is False:
                t += " **output differs**"
            cells.append(t)
        pu = r["per_unit"]
        rt = _num(r.get("rt_per_unit"), "{:.3g}")
        by = _bytes_text(pu["bytes_to_server"] + pu["bytes_from_server"]) if "round_trips" in pu else "-"
        out.append("| " + " | ".join([r["bench"], r["metric"]] + cells +
                                     [rt, _num(r.get("app_syncs_per_unit"), "{:.3g}"), by]) + " |")
    checks = []
    for r in rep["rows"]:
        for name, c in r["cells"].items():
            if "output_matches_native" in c and name != base:
                v = c["output_matches_native"]
                checks.append(f"{r['bench']} {name}: {'same' if v else 'DIFFERENT' if v is False else 'not compared'}")
    if checks:
        out += ["", "Decode outputs vs native (sha256 of the token ids; runs cut short compare their first "
                "16 tokens): " + ", ".join(checks)]
    turns = []
    for r in rep["rows"]:
        per = rep["runs"].get(r["bench"], {})
        if any("turns_seconds_per_unit" in per.get(n, {}) for n in cols) and r["bench"] not in [t[0] for t in turns]:
            vals = {n: per[n]["turns_seconds_per_unit"] for n in cols if "turns_seconds_per_unit" in per.get(n, {})}
            turns.append((r["bench"], vals))
    for bench, vals in turns:
        row = next(r for r in rep["rows"] if r["bench"] == bench)
        show = (lambda t: f"{1 / t:,.0f}") if row["rate"] else (lambda t: f"{t:.3g} s")
        out += ["", f"{bench} ({row['metric']}): native and loopback runs taken in turns, the median shown; every run: " +
                "; ".join(f"{n} " + ", ".join(show(t) for t in v) for n, v in vals.items())]
    failures = [f"{b} [{p}]: {rec['error']}" for b, per in rep["runs"].items() for p, rec in per.items()
                if not rec["ok"]]
    failures += [f"{b} round-trip probe {name}: {pr['error']}" for b, per in rep["probes"].items()
                 for name, pr in per.items() if "error" in pr]
    if failures:
        out += ["", "Failed or skipped:", ""] + [f"- {f}" for f in failures]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
