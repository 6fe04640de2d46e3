"""Runs bench/hf_generate.py natively and through gpuwire within a time budget (issue 20;
tests/gpu/hf-run installs transformers, then calls this). In this order, each run only
if the budget still has room for it:
  1. per attention choice (--attention, comma-separated): a native run, then one through
     gpuwire on loopback (the client in --nogpu, gpuwire's statistics kept), then one
     through each --emulated path;
  2. for the first attention choice: two --exact runs through gpuwire on loopback
     (--slope A,B new tokens, the same warm-up), whose round-trip counts' difference over
     B - A is the round trips per generated token; then, with --rounds N, N - 1 more
     native and loopback runs in turn (the ratio judged is the rounds' median).
Writes OUTDIR/hf.json (every run: command, exit status, wall time, result line,
statistics), OUTDIR/hf-table.txt (bench/hf/report.py's table, printed last), each run's
output in OUTDIR/hf-logs/, and the generated ids of each full run (NAME.ids).

    python3 bench/hf/run.py --out OUTDIR [--server ADDR --nogpu tests/gpu/nogpu]
        [--budget S] [--attention auto,flash] [--tokens 128] [--slope 32,128] [--rounds N]
        [--emulated NAME=HOST:PORT ...] [-- EXTRA hf_generate ARGUMENTS]

Without --server only the native runs are made (a check of this script off the GPU
machine: add `-- --device cpu --layers 2 ...`)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import report  # noqa: E402

# HF_GENERATE_SCRIPT: another script in its place (the unit tests' stand-in)
SCRIPT = Path(os.environ.get("HF_GENERATE_SCRIPT") or HERE.parent / "hf_generate.py")


def run_capped(cmd: list[str], timeout: float, log: Path) -> dict:
    """Run cmd in its own process group, output to log; killed (the whole group) after timeout."""
    t0 = time.monotonic()
    with open(log, "w") as f:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=f, text=True, errors="replace",
                             start_new_session=True)
        timed_out = False
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            try:
                os.killpg(p.pid, 9)
            except ProcessLookupError:
                pass
            out, _ = p.communicate()
        f.write("\n--- stdout ---\n" + (out or ""))
    return {"cmd": cmd, "rc": p.returncode, "timed_out": timed_out,
            "wall_s": round(time.monotonic() - t0, 2), "stdout": out or ""}


class Runner:
    def __init__(self, a: argparse.Namespace):
        self.a = a
        self.t0 = time.monotonic()
        self.out = Path(a.out)
        self.logs = self.out / "hf-logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.runs: dict[str, dict] = {}
        self.skipped: list[str] = []

    def left(self) -> float:
        return self.a.budget - (time.monotonic() - self.t0)

    def step(self, name: str, args: list[str], server: str | None, need_s: float, cap_s: float) -> None:
        """One hf_generate run, native (server None) or through gpuwire at server."""
        if self.left() < need_s:
            self.skipped.append(f"{name}: {self.left():.0f} s left, needs about {need_s:.0f}")
            return
        cmd = [self.a.python, str(SCRIPT), *args, *self.a.extra]
        stats = None
        if server:
            stats = self.out / f"hf-{name}.stats.json"
            stats.unlink(missing_ok=True)
            cmd = [*self.a.nogpu, self.a.python, "-m", "gpuwire", "run", "--server", server,
                   "--stats", str(stats), "--", *cmd]
        r = run_capped(cmd, max(10.0, min(cap_s, self.left() - 3)), self.logs / f"{name}.txt")
        rec = {"cmd": r["cmd"], "rc": r["rc"], "timed_out": r["timed_out"], "wall_s": r["wall_s"],
               "result": report.result_line(r["stdout"]), "stats": None}
        if stats is not None:
            try:
                rec["stats"] = json.loads(stats.read_text())
            except (OSError, json.JSONDecodeError):
                pass
        if not report.ok(rec):
            lines = (self.logs / f"{name}.txt").read_text(errors="replace").splitlines()
            rec["stderr_tail"] = lines[-15:]
        self.runs[name] = rec

    def go(self) -> dict:
        a = self.a
        paths = ["loopback", *a.emulated] if a.server else []
        servers = {"loopback": a.server, **a.emulated}
        for i, v in enumerate(a.attention):
            full = ["--tokens", str(a.tokens), "--attention", v]
            self.step(f"native-{v}", [*full, "--ids", str(self.out / f"native-{v}.ids")], None, 40, 180)
            for p in paths:
                self.step(f"gpuwire-{v}-{p}", [*full, "--ids", str(self.out / f"gpuwire-{v}-{p}.ids")],
                          servers[p], 60, 300)
            if i == 0 and a.server:
                for n in a.slope:
                    self.step(f"exact{n}-{v}", [*full, "--exact", str(n)], a.server, 45, 240)
                # more rounds, native and loopback in turn: the loop is bound by
                # Python's CPU time, which moves by 15% between minutes-apart runs
                for r in range(2, a.rounds + 1):
                    self.step(f"native-{v}-r{r}", full, None, 40, 180)
                    self.step(f"gpuwire-{v}-loopback-r{r}", full, a.server, 60, 300)
        if not a.server:
            self.skipped.append("gpuwire runs: no --server given")
        return {"bench": "hf_generate", "tokens": a.tokens, "attention": a.attention, "paths": paths,
                "emulated": a.emulated, "slope": a.slope, "extra_args": a.extra,
                "transformers_from": a.transformers_from, "budget_s": a.budget,
                "model": "TinyLlama-1.1B-shaped Llama, random weights, bf16" if not a.extra
                else f"hf_generate {' '.join(a.extra)}",
                "runs": self.runs, "skipped": self.skipped,
                "rounds": a.rounds,
                "summary": report.summarize(self.runs, a.attention, paths, tuple(a.slope), a.rounds),
                "elapsed_s": round(time.monotonic() - self.t0, 1)}


def parse(argv: list[str] | None) -> argparse.Namespace:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder for hf.json, hf-table.txt and the logs")
    p.add_argument("--server", help="gpuwire server HOST:PORT (without it: native runs only)")
    p.add_argument("--nogpu", default="", help="command prefix that hides the GPU from the client, split on spaces")
    p.add_argument("--budget", type=float, default=300.0, help="seconds for everything")
    p.add_argument("--attention", default="auto,flash", help="hf_generate --attention values, comma-separated")
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--slope", default="32,128", help="the two --exact token counts for round trips per token")
    p.add_argument("--rounds", type=int, default=1,
                   help="native and loopback runs of the first attention choice, in turn (the target is "
                        "judged on the median ratio of the rounds that ran)")
    p.add_argument("--emulated", action="append", default=[], metavar="NAME=HOST:PORT",
                   help="a gpuwire-netem path in front of the same server (repeatable)")
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--transformers-from", default="", help="where transformers came from, for the record")
    a = p.parse_args(argv)
    a.extra = extra
    a.nogpu = a.nogpu.split()
    a.attention = [v for v in a.attention.split(",") if v]
    try:
        a.slope = [int(n) for n in a.slope.split(",")]
    except ValueError:
        p.error("--slope: two whole numbers, A,B")
    if a.rounds < 1:
        p.error("--rounds: at least 1")
    if len(a.slope) != 2 or a.slope[0] == a.slope[1] or min(a.slope) < 0:
        p.error("--slope: two different counts, A,B")
    em = {}
    for e in a.emulated:
        name, sep, addr = e.partition("=")
        if not sep or not name or not addr or name == "loopback":
            p.error(f"--emulated {e!r}: NAME=HOST:PORT")
        em[name] = addr
    a.emulated = em
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    res = Runner(a).go()
    Path(a.out, "hf.json").write_text(json.dumps(res, indent=1))
    t = report.table(res)
    Path(a.out, "hf-table.txt").write_text(t)
    print(t, end="")
    return 1 if res["summary"]["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
