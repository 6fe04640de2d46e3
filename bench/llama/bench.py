"""llama.cpp's llama-bench natively and through gpuwire, on one model, within
a time budget (issue 20; tests/gpu/llama-run builds llama.cpp and the model,
then calls this).

Runs, in this order, each only if the budget still has room for it:
  1. the benchmark, pp512 and tg128 with -ngl 99 and REPS repetitions,
     natively, then through gpuwire with --stats (round trips of the run);
  2. round trips per generated token: two gpuwire runs of generation only
     (-p 0) that differ only in -n; the slope of their round-trip counts.
Every run also times the model's load: from llama-bench's "starting" line to
its next progress line, timed as the lines arrive on stderr (the load and the
context's creation, after CUDA's start-up and before any benchmark). The
first gpuwire run is cold for the server's content cache (the model's bytes
are fresh random ones), the two generation runs are warm.
Writes OUTDIR/llama.json (every run: command, exit status, wall time,
llama-bench's records, gpuwire's statistics) and OUTDIR/llama-table.txt, and
prints the table. A skipped step says why, in both.

    python3 bench/llama/bench.py --bin BUILD/bin --model M.gguf --out OUTDIR
        [--server ADDR --nogpu tests/gpu/nogpu] [--budget S] [--reps 3]

Without --server only the native runs are made (a check of this script and
of a build off the GPU machine).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

STARTING = "llama-bench: benchmark 1/"  # the first benchmark's "starting" line
# the first line llama.cpp logs (with -v) once the model is loaded: the context's construction
CONTEXT_MARK = "llama_context:"
GEN_SLOPE_TOKENS = (32, 160)
NETEM_TOKENS = 64  # generated behind each emulated path


def run_timed(cmd: list[str], env: dict[str, str], timeout: float) -> dict:
    """Run cmd; stdout kept whole, stderr kept as (seconds since start, line).
    On timeout the process group is killed and 'timed_out' set."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, errors="replace", start_new_session=True)
    lines: list[tuple[float, str]] = []
    out: list[str] = []

    def read_err() -> None:  # each line timed as it arrives
        assert p.stderr is not None
        for ln in p.stderr:
            lines.append((time.monotonic() - t0, ln.rstrip("\n")))

    def read_out() -> None:
        assert p.stdout is not None
        out.append(p.stdout.read())

    readers = [threading.Thread(target=f, daemon=True) for f in (read_err, read_out)]
    for r in readers:
        r.start()
    timed_out = False
    try:
        p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(p.pid, 9)
        except ProcessLookupError:
            pass
        p.wait()
    for r in readers:
        r.join(5)
    return {"cmd": cmd, "rc": p.returncode, "timed_out": timed_out,
            "wall_s": round(time.monotonic() - t0, 3), "stdout": "".join(out), "stderr": lines}


def load_seconds(stderr: list[tuple[float, str]]) -> float | None:
    """Seconds from llama-bench's 'starting' line to the first line of context
    creation (llama.cpp's log with -v), else to the next progress line."""
    start = next((t for t, ln in stderr if ln.startswith(STARTING) and ln.endswith(": starting")), None)
    if start is None:
        return None
    after = [(t, ln) for t, ln in stderr if t >= start and not ln.endswith(": starting")]
    end = next((t for t, ln in after if ln.startswith(CONTEXT_MARK)), None)
    if end is None:
        end = next((t for t, ln in after if ln.startswith("llama-bench: benchmark")), None)
    return None if end is None else round(end - start, 3)


def bench_records(stdout: str) -> list[dict]:
    """llama-bench's -o json records, less the fields that only describe the host."""
    try:
        recs = json.loads(stdout)
    except json.JSONDecodeError:
        # anything else on stdout (a library's notice): take the array llama-bench printed
        start = 0 if stdout.startswith("[") else stdout.find("\n[") + 1
        try:
            recs = json.loads(stdout[start:stdout.rfind("]") + 1]) if start > 0 or stdout.startswith("[") else []
        except json.JSONDecodeError:
            return []
    keep = ("n_prompt", "n_gen", "avg_ts", "stddev_ts", "avg_ns", "samples_ts", "flash_attn",
            "n_gpu_layers", "backends", "gpu_info", "model_size", "model_n_params", "build_commit")
    return [{k: r.get(k) for k in keep} for r in recs if isinstance(r, dict)]


def read_stats(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


class Bench:
    def __init__(self, a: argparse.Namespace):
        self.a = a
        self.t0 = time.monotonic()
        self.out = Path(a.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.bench = str(Path(a.bin) / "llama-bench")
        self.env = dict(os.environ)
        self.env["LD_LIBRARY_PATH"] = ":".join(
            p for p in (str(Path(a.bin).resolve()), os.environ.get("LD_LIBRARY_PATH", "")) if p)
        self.runs: dict[str, dict] = {}
        self.skipped: list[str] = []

    def left(self) -> float:
        return self.a.budget - (time.monotonic() - self.t0)

    def base(self, *extra: str) -> list[str]:
        return [self.bench, "-m", self.a.model, "-ngl", "99", "-o", "json", *extra]

    def step(self, name: str, args: list[str], via_gpuwire: bool, need_s: float, cap_s: float,
             server: str | None = None) -> dict | None:
        """One llama-bench run, native or through gpuwire, killed after cap_s
        (a hang costs that, not the rest of the budget); None if skipped."""
        if self.left() < need_s:
            self.skipped.append(f"{name}: {self.left():.0f} s left, needs about {need_s:.0f}")
            return None
        cmd = self.base(*args)
        stats = None
        if via_gpuwire:
            stats = self.out / f"llama-{name}.stats.json"
            stats.unlink(missing_ok=True)
            cmd = [*self.a.nogpu, sys.executable, "-m", "gpuwire", "run", "--server", server or self.a.server,
                   "--stats", str(stats), "--", *cmd]
        r = run_timed(cmd, self.env, timeout=max(10.0, min(cap_s, self.left() - 5)))
        (self.out / f"llama-{name}.stderr.txt").write_text(
            "".join(f"{t:9.3f} {ln}\n" for t, ln in r["stderr"]))
        rec = {"cmd": r["cmd"], "rc": r["rc"], "timed_out": r["timed_out"], "wall_s": r["wall_s"],
               "load_s": load_seconds(r["stderr"]), "tests": bench_records(r["stdout"])}
        if stats is not None:
            rec["stats"] = read_stats(stats)
        if r["rc"] != 0:
            rec["stderr_tail"] = [ln for _, ln in r["stderr"][-15:]]
        self.runs[name] = rec
        return rec

    def go(self) -> dict:
        a = self.a
        gw = bool(a.server)
        main = ["-p", "512", "-n", "128", "-r", str(a.reps), "--progress"]
        self.step("bench-native", main, False, 30, 150)
        if gw:
            if self.step("bench-gpuwire", main, True, 60, 240) is None:
                # the slope compares two warm loads: a cold first one (the server's cache
                # filling) would add its reference round trips to one side only
                self.step("gen-warmup-gpuwire", ["-p", "0", "-n", "1", "-r", "1"], True, 20, 120)
            for n in GEN_SLOPE_TOKENS:
                self.step(f"gen{n}-gpuwire", ["-p", "0", "-n", str(n), "-r", "1", "--progress"], True, 30, 120)
            # generation behind emulated network paths (gpuwire-netem in front of the same server)
            for label, addr in a.netem:
                self.step(f"tg-{label}", ["-p", "0", "-n", str(NETEM_TOKENS), "-r", "1", "--progress"], True, 40, 150,
                          server=addr)
        else:
            self.skipped.append("gpuwire runs: no --server given")
        return {"model": a.model, "bin": a.bin, "reps": a.reps, "budget_s": a.budget, "netem": a.netem,
                "build": a.build, "model_info": read_stats(Path(a.model_info)) if a.model_info else None,
                "runs": self.runs, "skipped": self.skipped,
                "summary": summarize(self.runs, [(lbl, rtt_ms_of(lbl)) for lbl, _ in a.netem]),
                "elapsed_s": round(time.monotonic() - self.t0, 1)}


def tokens_per_s(run: dict | None, n_prompt: int, n_gen: int) -> float | None:
    for t in (run or {}).get("tests", []):
        if t.get("n_prompt") == n_prompt and t.get("n_gen") == n_gen:
            return t.get("avg_ts")
    return None


def round_trips(run: dict | None) -> int | None:
    s = (run or {}).get("stats") or {}
    return s.get("round_trips")


def summarize(runs: dict[str, dict], netem_paths: list[tuple[str, float]] = ()) -> dict:
    s: dict = {}
    for test, (p, n) in (("pp512", (512, 0)), ("tg128", (0, 128))):
        nat = tokens_per_s(runs.get("bench-native"), p, n)
        rem = tokens_per_s(runs.get("bench-gpuwire"), p, n)
        s[test] = {"native_tps": nat, "gpuwire_tps": rem,
                   "ratio": round(rem / nat, 4) if nat and rem else None}
    a, b = (runs.get(f"gen{n}-gpuwire") for n in GEN_SLOPE_TOKENS)
    ra, rb = round_trips(a), round_trips(b)
    s["rt_per_generated_token"] = (round((rb - ra) / (GEN_SLOPE_TOKENS[1] - GEN_SLOPE_TOKENS[0]), 2)
                                   if ra is not None and rb is not None else None)
    # the whole benchmark run's round trips over every token it processed
    # (warm-ups included: one pp512 and one generated token)
    main = runs.get("bench-gpuwire")
    rt = round_trips(main)
    if main and rt is not None and main.get("tests"):
        toks = sum((t["n_prompt"] + t["n_gen"]) * len(t.get("samples_ts") or []) for t in main["tests"])
        toks += sum(t["n_prompt"] + (1 if t["n_gen"] else 0) for t in main["tests"])
        s["bench_round_trips"] = rt
        s["bench_rt_per_token"] = round(rt / toks, 3) if toks else None
    warm = [r.get("load_s") for n in GEN_SLOPE_TOKENS if (r := runs.get(f"gen{n}-gpuwire"))]
    warm = [w for w in warm if w is not None]
    s["load_s"] = {"native": (runs.get("bench-native") or {}).get("load_s"),
                   "gpuwire-cold": (runs.get("bench-gpuwire") or {}).get("load_s"),
                   "gpuwire-warm": min(warm) if warm else None}
    # behind an emulated RTT R: time per generated token against native + 1.1 R (issue 20's target)
    nat = s["tg128"]["native_tps"]
    s["netem"] = []
    for label, rtt_ms in netem_paths:
        tps = tokens_per_s(runs.get(f"tg-{label}"), 0, NETEM_TOKENS)
        ms = 1000.0 / tps if tps else None
        bound = 1000.0 / nat + 1.1 * rtt_ms if nat else None
        s["netem"].append({"path": label, "rtt_ms": rtt_ms, "tps": tps, "ms_per_token": ms,
                           "native_ms_per_token": 1000.0 / nat if nat else None, "target_ms": bound,
                           "met": (ms <= bound) if ms and bound else None})
    s["failed"] = [k for k, r in runs.items() if r["rc"] != 0 or r["timed_out"]]
    return s


def rtt_ms_of(label: str) -> float:
    """'500us' -> 0.5, '2ms' -> 2.0 (ValueError otherwise)."""
    for unit, scale in (("us", 1e-3), ("ms", 1.0)):
        if label.endswith(unit):
            return float(label[:-len(unit)]) * scale
    raise ValueError(label)


def fmt(v, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def table(res: dict) -> str:
    s = res["summary"]
    mi = res.get("model_info") or {}
    head = [f"llama.cpp: {res.get('build') or 'build not said'}; model: "
            + (f"{mi['params'] / 1e6:.0f} M parameters, {mi['bytes'] / 1e6:.0f} MB f16, {mi['shape']['n_layer']} layers"
               if mi.get("params") else res["model"])
            + f"; llama-bench -r {res['reps']}"]
    rows = ["| llama-bench (-ngl 99) | native | gpuwire | gpuwire/native |", "|---|---|---|---|"]
    # which backend each did run on: a CUDA build whose CUDA failed runs on the CPU, quietly
    be = [next((f"{t.get('backends')} {t.get('gpu_info') or ''}".strip() for t in (res["runs"].get(k) or {}).get("tests", [])), "-")
          for k in ("bench-native", "bench-gpuwire")]
    rows.append(f"| backend | {be[0]} | {be[1]} | |")
    for test in ("pp512", "tg128"):
        t = s[test]
        rows.append(f"| {test} tokens/s | {fmt(t['native_tps'])} | {fmt(t['gpuwire_tps'])} | "
                    f"{fmt(t['ratio'], '.3f')} |")
    ld = s["load_s"]
    rows.append(f"| model load + context s (gpuwire: cold / warm) | {fmt(ld['native'], '.2f')} | "
                f"{fmt(ld['gpuwire-cold'], '.2f')} / {fmt(ld['gpuwire-warm'], '.2f')} | "
                f"{fmt(ld['gpuwire-warm'] / ld['native'], '.2f') if ld['gpuwire-warm'] and ld['native'] else '-'} (warm) |")
    rows.append(f"| round trips per generated token (slope of -n {GEN_SLOPE_TOKENS[0]} and "
                f"{GEN_SLOPE_TOKENS[1]}) | | {fmt(s['rt_per_generated_token'], '.2f')} | |")
    if "bench_round_trips" in s:
        rows.append(f"| round trips of the whole benchmark run, per token processed | | "
                    f"{s['bench_round_trips']} ({fmt(s['bench_rt_per_token'], '.3f')}) | |")
    for e in s.get("netem", []):
        rows.append(f"| tg{NETEM_TOKENS} behind {e['path']} RTT: ms per token (target native + 1.1 RTT) | "
                    f"{fmt(e['native_ms_per_token'], '.2f')} | {fmt(e['ms_per_token'], '.2f')} | "
                    f"target {fmt(e['target_ms'], '.2f')}: {'met' if e['met'] else 'missed' if e['met'] is False else '-'} |")
    lines = head + rows
    if s["failed"]:
        lines.append(f"failed runs: {', '.join(s['failed'])} (llama.json: stderr_tail)")
    for k in res["skipped"]:
        lines.append(f"skipped: {k}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bin", required=True, help="the folder holding llama-bench and its libraries")
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True, help="folder for llama.json, llama-table.txt and the logs")
    p.add_argument("--server", help="gpuwire server HOST:PORT (without it: native runs only)")
    p.add_argument("--nogpu", default="", help="command prefix that hides the GPU from the client "
                   "(tests/gpu/nogpu), split on spaces")
    p.add_argument("--budget", type=float, default=300.0, help="seconds for everything")
    p.add_argument("--reps", type=int, default=3, help="llama-bench -r for pp512 and tg128")
    p.add_argument("--build", default="", help="how llama-bench was got, for the record (e.g. 'built in 300 s')")
    p.add_argument("--model-info", help="make_gguf.py's JSON line, saved to a file")
    p.add_argument("--netem", action="append", default=[], metavar="LABEL=HOST:PORT",
                   help="a gpuwire-netem path in front of the server, e.g. 2ms=127.0.0.1:7792 (the label's "
                        "number and unit, us or ms, is its RTT); generation runs behind each")
    a = p.parse_args(argv)
    a.nogpu = a.nogpu.split()
    try:
        a.netem = [(lbl, addr) for lbl, _, addr in (x.partition("=") for x in a.netem)]
        for lbl, addr in a.netem:
            rtt_ms_of(lbl)
            if not addr:
                raise ValueError(lbl)
    except ValueError as e:
        p.error(f"--netem LABEL=HOST:PORT with a label such as 500us or 2ms: {e}")
    res = Bench(a).go()
    Path(a.out, "llama.json").write_text(json.dumps(res, indent=1))
    t = table(res)
    Path(a.out, "llama-table.txt").write_text(t)
    print(t, end="")
    return 1 if res["summary"]["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
