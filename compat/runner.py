#!/usr/bin/env python3
"""The compatibility suite's runner (standard library only): see compat/run.

Every workload runs twice: natively, and through `gpuwire run` inside
tests/gpu/nogpu (no GPU visible to the client). Each prints one JSON result
line last: {"name", "digest", "tolerance", "notes"} plus, for workloads
compared within a tolerance, "values", "rtol", "atol", and optionally "same"
(a value that must be equal in both runs). The runner compares, explains
every failure with the last lines of the failing run's stderr, and writes
OUTDIR/results.json, OUTDIR/compatibility.md and docs/compatibility.md.
"""

from __future__ import annotations

import argparse
import ast
import concurrent.futures as cf
import datetime
import fnmatch
import importlib.metadata as md
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import verdict as rules  # noqa: E402  (compat/verdict.py: the pure verdict rules)

ROOT = Path(__file__).resolve().parent.parent
COMPAT = ROOT / "compat"
BUILD = ROOT / "build" / "compat"
SEGV_REPORT = BUILD / "segv-report.so"
DOC = ROOT / "docs" / "compatibility.md"
# Why a workload failed, once someone found out (compat/known_causes.json): shown
# beside its failure, so a rerun's document keeps the explanation.
try:
    KNOWN_CAUSES = json.loads((ROOT / "compat" / "known_causes.json").read_text())
except (OSError, ValueError):
    KNOWN_CAUSES = {}
RESULTS = COMPAT / "results.json"
GENCODE = ["-gencode", "arch=compute_90,code=sm_90", "-gencode", "arch=compute_90,code=compute_90"]
DEFAULT_TIMEOUT = 120      # seconds for one run of a workload without its own "# compat: timeout=N"
LOG_CAP = 256 * 1024       # per log file kept in OUTDIR/logs (the tail)
END_RESERVE = 15           # seconds kept at the end of the budget for reports and shutdown
FRAMEWORKS = [("torch_", "torch"), ("triton_", "triton"), ("cupy_", "cupy"), ("jax_", "jax"),
              ("numba_", "numba-cuda"), ("cuda_", "cuda"), ("selftest_", "selftest")]

HEADER = """\
# Compatibility

`compat/` holds one small script per workload: real frameworks (PyTorch eager,
autograd, AMP, CUDA graphs, the caching allocator, `torch.compile`/Triton,
CuPy, JAX, numba-cuda) and CUDA C programs linked with the shared and the
static cudart. `compat/run` runs each workload twice on the GPU machine:
natively, and through `gpuwire run` with the client inside `tests/gpu/nogpu`
(a mount namespace where `/dev/nvidia*` and the driver's library folder are
hidden, so the client cannot use the local GPU), against `gpuwire server
--driver nvidia` on the same machine. It then compares the two results.
This file is written by that runner: edit the template in `compat/runner.py`,
not the tables.

**How results are compared.** Every workload prints, as its last line, JSON
with its name, a digest of its results (SHA-256 over labelled arrays for the
Python workloads, FNV-1a 64 for the CUDA C programs), its tolerance and
notes, and may add fields of its own. Every field is compared (one present in
a single run is a difference), timings aside: fields whose name ends in `_s`,
`_ms`, `_us` or `_ns`, and durations such as `12.5 ms` written inside text
(`compat/verdict.py`). A workload marked `exact` passes when every field is
equal, so its results are bit-for-bit the native ones. A workload whose library may choose
another algorithm or summation order from one run to the next (cuSOLVER,
cuSPARSE, Inductor and XLA autotuning) also prints summary values (row sums,
singular values, losses, a sample of entries) and passes when every value,
and every number in its other fields, agrees within its stated tolerance,
|native − gpuwire| ≤ atol + rtol · max(|native|, |gpuwire|) (its `same` field
exactly); the table says whether its digests were bit-exact
too. The deterministic workloads set `torch.use_deterministic_algorithms(True)`,
`CUBLAS_WORKSPACE_CONFIG=:4096:8` and no cuDNN benchmarking, and compiler
caches are private to each run, so both runs compile their own kernels. A
workload whose native run fails (nonzero exit, timeout, no result line) is
marked *native-failed*, never a pass: a fault of the workload or the machine,
with nothing to compare gpuwire against. Round trips are the client's count
of requests that waited for a reply (`gpuwire run --stats`).

**Running it.** On the GPU machine, in one call of under 9 minutes:
`bash compat/run OUTDIR`. It builds the natives and `compat/programs/`
(nvcc, both cudart flavours, into `build/compat/`), starts the server, runs
several workloads at a time within a time budget (`--budget`, default 500 s;
a run that would overrun it is marked *skipped*), reruns failed gpuwire runs
with `GPUWIRE_DEBUG=1` while time is left (a crash there also leaves its
Python stack and its native one, each frame's source line named, in the
run's debug log: `tools/segv-report.c`), and writes `OUTDIR/compatibility.md`,
`OUTDIR/results.json`, every run's output in `OUTDIR/logs/`, this file and
`compat/results.json` (the same results, machine-readable).
Without a GPU, `bash compat/run --dry-run` exercises the runner itself (fake
workloads covering every verdict, against the CPU stand-in driver) and
`bash compat/run --check` compiles every workload script; `bash compat/run --render RESULTS_JSON` rewrites this file from a
run's results.json, after `compat/known_causes.json` (why a workload fails),
`compat/nvml_comparison.md`, `compat/freshness.md` (what changed since the
run and was not run on a GPU: empty it after a new run) or
`compat/numba_suite.md` changed; `bash compat/run --rejudge RESULTS_JSON [OUTDIR]`
judges a run's results again with the current rules, lists the verdicts that
change, and writes the new results.json and compatibility.md to OUTDIR only.
"""


@dataclass
class Workload:
    name: str
    framework: str
    cmd: list
    timeout: float
    what: str
    expect: str = ""          # selftest only: the verdict the dry run must reach


@dataclass
class Run:
    mode: str
    rc: int | None = None
    timed_out: bool = False
    skipped: str = ""
    wall: float = 0.0
    result: dict | None = None
    error: str = ""
    tail: list = field(default_factory=list)
    stats: dict | None = None


# ---------------------------------------------------------------- discovery

def first_paragraph(text: str) -> str:
    return " ".join((text or "").strip().split("\n\n")[0].split())


def framework_of(name: str) -> str:
    for prefix, fw in FRAMEWORKS:
        if name.startswith(prefix):
            return fw
    return "other"


def python_workloads(folder: Path) -> list:
    out = []
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith("_"):
            continue
        src = path.read_text()
        what = first_paragraph(ast.get_docstring(ast.parse(src)) or "")
        m = re.search(r"^# compat: timeout=(\d+)", src, re.M)
        e = re.search(r"^# compat: expect=(.+)$", src, re.M)
        out.append(Workload(path.stem, framework_of(path.stem), [sys.executable, str(path)],
                            float(m.group(1)) if m else DEFAULT_TIMEOUT, what, e.group(1).strip() if e else ""))
    return out


def program_workloads() -> list:
    out = []
    for src in sorted((COMPAT / "programs").glob("*.cu")):
        m = re.match(r"\s*/\*(.*?)\*/", src.read_text(), re.S)
        what = first_paragraph(m.group(1) if m else "")
        for variant in ("shared", "static"):
            out.append(Workload(f"cuda_{src.stem}_{variant}", "cuda", [str(BUILD / f"{src.stem}_{variant}")], 60,
                                f"{what} (cudart {variant})"))
    return out


def select(workloads: list, only: str | None) -> list:
    if not only:
        return workloads
    pats = [p.strip() for p in only.split(",") if p.strip()]
    return [w for w in workloads if any(fnmatch.fnmatch(w.name, p) or p == w.name for p in pats)]


# ---------------------------------------------------------------- environment facts

def pkg(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def first_pkg(*names) -> tuple:
    for n in names:
        v = pkg(n)
        if v:
            return n, v
    return names[0], None


def versions() -> dict:
    def show(n, v):
        return f"{n} {v}" if v else f"{n} (not installed)"
    torch = show("torch", pkg("torch"))
    cupy = show(*first_pkg("cupy-cuda13x", "cupy-cuda12x", "cupy"))
    plugin = first_pkg("jax-cuda13-plugin", "jax-cuda12-plugin")
    jax = f"{show('jax', pkg('jax'))}, {show('jaxlib', pkg('jaxlib'))}, {show(*plugin)}"
    nvcc = "nvcc (not found)"
    try:
        text = subprocess.run(["nvcc", "--version"], capture_output=True, text=True, timeout=30).stdout
        m = re.search(r"release ([\d.]+), V([\d.]+)", text)
        nvcc = f"CUDA C, nvcc {m.group(2)}" if m else nvcc
    except (OSError, subprocess.SubprocessError):
        pass
    return {"torch": torch, "triton": f"{show('triton', pkg('triton'))} ({torch})", "cupy": cupy, "jax": jax,
            "numba-cuda": f"{show('numba-cuda', pkg('numba-cuda'))} ({show('numba', pkg('numba'))})",
            "cuda": nvcc, "selftest": "python (selftest)", "other": "?"}


def card() -> str:
    try:
        r = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                           capture_output=True, text=True, timeout=30)
        line = r.stdout.strip().splitlines()[0] if r.returncode == 0 and r.stdout.strip() else ""
        if line:
            name, driver, mem = [x.strip() for x in line.split(",")[:3]]
            return f"{name}, driver {driver}, {mem}"
    except (OSError, subprocess.SubprocessError, IndexError, ValueError):
        pass
    return "unknown card (nvidia-smi not available)"


def commit() -> str:
    if os.environ.get("GPUWIRE_COMMIT"):  # the GPU machine's copy may carry a stale .git
        return os.environ["GPUWIRE_COMMIT"]
    try:
        r = subprocess.run(["git", "-C", str(ROOT), "log", "-1", "--format=%h %s"], capture_output=True, text=True,
                           timeout=10)
        return r.stdout.strip() if r.returncode == 0 and r.stdout.strip() else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def base_env() -> dict:
    env = dict(os.environ)
    for k in ("LD_AUDIT", "GPUWIRE_STATS", "GPUWIRE_LIBDIR", "GPUWIRE_DEBUG"):
        env.pop(k, None)
    env["PYTHONPATH"] = str(ROOT / "src") + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"   # no __pycache__ in compat/workloads
    env["PATH"] = "/usr/local/cuda/bin:" + env.get("PATH", "")
    return env


# ---------------------------------------------------------------- build and server

def build(log: Path, programs: bool) -> str:
    """Build the natives (fatal if it fails: returns the reason) and, at the same time, the CUDA C
    programs (one that does not build shows up as a native-failed verdict of its workloads)."""
    jobs = []
    if programs:
        BUILD.mkdir(parents=True, exist_ok=True)
        for src in sorted((COMPAT / "programs").glob("*.cu")):
            for variant in ("shared", "static"):
                exe = BUILD / f"{src.stem}_{variant}"
                exe.unlink(missing_ok=True)
                jobs.append(["nvcc", "-O2", *GENCODE, "-Xcompiler", "-Wall", "-cudart", variant, "-o", str(exe),
                             str(src)])

    # the crash reporter the debug reruns preload (tools/segv-report.c)
    BUILD.mkdir(parents=True, exist_ok=True)
    SEGV_REPORT.unlink(missing_ok=True)
    jobs.append(["cc", "-shared", "-fPIC", "-O1", "-g", "-o", str(SEGV_REPORT), str(ROOT / "tools" / "segv-report.c"),
                 "-ldl"])

    def one(cmd):
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=base_env())
        return "$ " + " ".join(cmd) + f"\n{r.stdout}{r.stderr}" + (f"exit {r.returncode}\n" if r.returncode else "")

    with cf.ThreadPoolExecutor(8) as pool:
        nvcc = [pool.submit(one, cmd) for cmd in jobs]
        with open(log, "a") as f:
            f.write("$ make -s -C native\n")
            f.flush()
            r = subprocess.run(["make", "-s", "-C", "native", f"-j{os.cpu_count() or 2}"], cwd=ROOT, stdout=f,
                               stderr=subprocess.STDOUT, env=base_env())
            for fut in nvcc:
                f.write(fut.result())
    return f"make -C native failed (exit {r.returncode})" if r.returncode else ""


def free_port(start: int) -> int:
    for port in range(start, start + 50):
        with socket.socket() as s:
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError(f"no free port in {start}..{start + 49}")


def start_server(port: int, driver: str, log: Path) -> tuple:
    f = open(log, "w")
    p = subprocess.Popen([sys.executable, "-m", "gpuwire", "server", "--listen", f"127.0.0.1:{port}", "--driver", driver],
                         cwd=ROOT, env=base_env(), stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                         start_new_session=True)
    for _ in range(100):
        if p.poll() is not None:
            return p, f"server exited at once (exit {p.returncode}); see server.log"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return p, ""
        except OSError:
            time.sleep(0.2)
    return p, "server did not listen within 20 s; see server.log"


def stop(p: subprocess.Popen) -> None:
    """End a process group this runner started: TERM, then KILL after 5 s."""
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    try:
        os.killpg(p.pid, signal.SIGKILL)   # stragglers of the group (e.g. forked workers)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        pass


# ---------------------------------------------------------------- running

class Context:
    def __init__(self, args, outdir: Path, end: float, addr: str):
        self.args = args
        self.outdir = outdir
        self.logs = outdir / "logs"
        self.end = end
        self.addr = addr
        self.tmp = Path(tempfile.mkdtemp(prefix="gpuwire-compat-"))
        self.env = base_env()

    def remaining(self) -> float:
        return self.end - END_RESERVE - time.monotonic()

    def wrap(self, cmd: list, stats: Path | None) -> list:
        """The same command as a gpuwire client (inside tests/gpu/nogpu unless this is a dry run)."""
        g = [sys.executable, "-m", "gpuwire", "run", "--server", self.addr]
        if stats:
            g += ["--stats", str(stats)]
        g += ["--", *cmd]
        return g if self.args.dry_run else ["sh", str(ROOT / "tests" / "gpu" / "nogpu"), *g]


def cap_file(path: Path, limit: int = LOG_CAP) -> None:
    try:
        size = path.stat().st_size
        if size <= limit:
            return
        with open(path, "rb") as f:
            f.seek(size - limit)
            tail = f.read()
        path.write_bytes(f"[... {size - limit} earlier bytes cut ...]\n".encode() + tail)
    except OSError:
        pass


def tail_lines(path: Path, n: int = 12) -> list:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    lines = [ln.rstrip()[:300] for ln in text.splitlines() if ln.strip()]
    if lines and lines[0].startswith("$ "):   # the command line execute() writes first
        lines = lines[1:]
    return lines[-n:]


def result_line(path: Path) -> dict | None:
    try:
        lines = [ln for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return None
    if not lines:
        return None
    try:
        obj = json.loads(lines[-1])
    except ValueError:
        return None
    return obj if isinstance(obj, dict) and "digest" in obj and "name" in obj else None


def execute(ctx: Context, w: Workload, mode: str) -> Run:
    run = Run(mode)
    left = ctx.remaining()
    if left < 10:
        run.skipped = "out of time (suite budget spent)"
        return run
    timeout = min(w.timeout, left)
    cut = timeout < w.timeout    # the suite's budget, not the workload, sets this run's limit
    out, err = ctx.logs / f"{w.name}.{mode}.out", ctx.logs / f"{w.name}.{mode}.err"
    stats = ctx.logs / f"{w.name}.stats.json" if mode == "gpuwire" else None
    if stats:
        stats.unlink(missing_ok=True)
    if not Path(w.cmd[0]).exists():
        run.error = f"{w.cmd[0]} was not built (see build.log)"
        run.tail = tail_lines(ctx.outdir / "build.log", 8)
        return run
    tmp = ctx.tmp / f"{w.name}.{mode}"
    tmp.mkdir(parents=True, exist_ok=True)
    env = dict(ctx.env, TMPDIR=str(tmp))
    cmd = w.cmd if mode == "native" else ctx.wrap(w.cmd, stats)
    t0 = time.monotonic()
    with open(out, "wb") as fo, open(err, "wb") as fe:
        fe.write(("$ " + " ".join(cmd) + "\n").encode())
        fe.flush()
        p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=fo, stderr=fe,
                             start_new_session=True)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            run.timed_out = True
        stop(p)
    run.wall = round(time.monotonic() - t0, 2)
    run.rc = p.returncode
    cap_file(out)
    cap_file(err)
    run.result = result_line(out)
    if run.timed_out and cut:
        run.skipped = f"stopped at the suite's time budget after {timeout:.0f} s"
    elif run.timed_out:
        run.error = f"timed out after {timeout:.0f} s"
    elif run.rc != 0:
        run.error = f"exit {run.rc}" if run.rc > 0 else f"killed by signal {-run.rc}"
    elif run.result is None:
        run.error = "no JSON result line at the end of stdout"
    if run.error:
        run.tail = tail_lines(err) or tail_lines(out)
    if stats and stats.exists():
        try:
            run.stats = json.loads(stats.read_text())
        except ValueError:
            run.stats = None
    return run


def native_frames(text: bytes) -> bytes:
    """The source lines of the frames tools/segv-report.so printed ("segv-report: #N MODULE +0xOFF SYM"),
    named by addr2line on this machine, where the modules are."""
    out = []
    for line in text.decode(errors="replace").splitlines():
        parts = line.split()
        if len(parts) < 4 or parts[0] != "segv-report:" or not parts[1].startswith("#"):
            continue
        where = ""
        if Path(parts[2]).is_file() and parts[3].startswith("+0x"):
            try:
                r = subprocess.run(["addr2line", "-f", "-C", "-e", parts[2], parts[3][1:]], capture_output=True,
                                   text=True, timeout=20)
                where = " ".join(r.stdout.split())
            except (OSError, subprocess.SubprocessError):
                pass
        out.append(f"{parts[1]} {Path(parts[2]).name} {parts[3]} {where}")
    return ("\n[compat: native frames at the crash]\n" + "\n".join(out) + "\n").encode() if out else b""


def debug_rerun(ctx: Context, w: Workload) -> str:
    """Run a failed gpuwire case again with GPUWIRE_DEBUG=1, keeping the last 200 KB of its output; a
    crash there also prints the Python stack (faulthandler) and the native one (tools/segv-report.c,
    its frames named at the end of the log)."""
    left = ctx.remaining()
    if left < 20:
        return ""
    path = ctx.logs / f"{w.name}.debug.txt"
    tmp = ctx.tmp / f"{w.name}.debug"
    tmp.mkdir(parents=True, exist_ok=True)
    env = dict(ctx.env, TMPDIR=str(tmp), GPUWIRE_DEBUG="1", PYTHONFAULTHANDLER="1")
    if SEGV_REPORT.is_file():
        env["LD_PRELOAD"] = " ".join(x for x in (str(SEGV_REPORT), env.get("LD_PRELOAD", "")) if x)
    p = subprocess.Popen(ctx.wrap(w.cmd, None), cwd=ROOT, env=env,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         start_new_session=True)
    keep = bytearray()

    def drain():
        for chunk in iter(lambda: p.stdout.read(65536), b""):
            keep.extend(chunk)
            if len(keep) > 400_000:
                del keep[:-200_000]

    t = threading.Thread(target=drain, daemon=True)
    t.start()
    try:
        p.wait(min(w.timeout, left))
    except subprocess.TimeoutExpired:
        keep.extend(b"\n[compat: debug rerun timed out]\n")
    stop(p)
    t.join(5)
    path.write_bytes(bytes(keep[-200_000:]) + native_frames(bytes(keep)))
    return str(path.relative_to(ctx.outdir))


def gpuwire_smi(ctx: Context) -> dict:
    """`gpuwire smi` as a client with no GPU sees the server's GPUs (if this build has the command)."""
    # `gpuwire smi` reaches the server through the client libraries by itself: no `gpuwire run` around it.
    plain = [sys.executable, "-m", "gpuwire", "smi", "--server", ctx.addr]
    cmd = plain if ctx.args.dry_run else ["sh", str(ROOT / "tests" / "gpu" / "nogpu"), *plain]
    try:
        r = subprocess.run(cmd, cwd=ROOT, env=ctx.env, capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
        return {"cmd": "gpuwire smi --server " + ctx.addr, "rc": r.returncode,
                "output": (r.stdout + r.stderr)[-6000:]}
    except subprocess.TimeoutExpired:
        return {"cmd": "gpuwire smi", "rc": None, "output": "timed out after 60 s"}
    except OSError as e:
        return {"cmd": "gpuwire smi", "rc": None, "output": str(e)}


# ---------------------------------------------------------------- comparison

def as_run(run: Run) -> dict:
    """A Run as verdict.judge takes it."""
    return {"rc": run.rc, "timed_out": run.timed_out, "error": run.error, "skipped": run.skipped,
            "result": run.result, "tail": run.tail}


def judge(nat: Run, rem: Run) -> dict:
    return rules.judge(as_run(nat), as_run(rem))


# ---------------------------------------------------------------- reports

def cell(text) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def short(run: Run) -> str:
    if run.skipped:
        return "skipped"
    if run.error:
        return "error"
    return run.result["digest"].split(":")[-1][:12]


def rtrips(run: Run):
    return run.stats.get("round_trips") if run.stats else None


def write_reports(ctx: Context, meta: dict, rows: list, smi: dict | None) -> dict:
    counts = {}
    for r in rows:
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    passed = counts.get("pass", 0)
    exact = sum(1 for r in rows if r["verdict"] == "pass" and r["tolerance"] == "exact")
    within = passed - exact
    meta["counts"] = counts
    doc = {**meta, "workloads": rows, "gpuwire_smi": smi}
    results = json.dumps(doc, indent=1) + "\n"
    (ctx.outdir / "results.json").write_text(results)

    md_lines = [HEADER, f"## Run of {meta['date']} — {meta['card']}", ""]
    md_lines.append(f"Command: `{meta['command']}` at commit {meta['commit']}; {len(rows)} workloads, "
                    f"{meta['jobs']} runs at a time, {meta['wall_s']:.0f} s in all (budget {meta['budget_s']:.0f} s).")
    md_lines.append("")
    md_lines.append("Frameworks: " + "; ".join(v for k, v in meta["versions"].items()
                                                if any(r["framework_key"] == k for r in rows)) + ".")
    md_lines.append("")
    md_lines.append(f"**{passed} of {len(rows)} pass** ({exact} bit-exact, {within} within their stated tolerance); "
                    f"{counts.get('FAIL', 0)} fail through gpuwire, {counts.get(rules.NATIVE_FAILED, 0)} native failures, "
                    f"{counts.get('skipped', 0)} skipped.")
    md_lines.append("")
    fresh = COMPAT / "freshness.md"  # what changed since this run and was not run on a GPU, kept by hand
    if fresh.exists() and fresh.read_text().strip():
        md_lines += [fresh.read_text().rstrip(), ""]
    md_lines.append("| workload | framework | native result | gpuwire result | result | round trips | compared |")
    md_lines.append("|---|---|---|---|---|---|---|")
    for r in rows:
        verdict = r["verdict"] if r["verdict"] != "FAIL" else "**FAIL**"
        if r["verdict"] == "pass" and r["tolerance"] != "exact":
            verdict += " (bit-exact)" if r["exact"] else " (within tolerance)"
        rt = r["gpuwire"]["round_trips"]
        md_lines.append(f"| {r['name']} | {r['framework']} | `{r['native']['short']}` | `{r['gpuwire']['short']}` | "
                        f"{verdict} | {rt if rt is not None else '–'} | {cell(r['tolerance'])} |")
    bad = [r for r in rows if r["verdict"] != "pass"]
    if bad:
        md_lines += ["", "### Failures, each with its explanation", ""]
        for r in bad:
            md_lines.append(f"**{r['name']}** — {r['verdict']}: {r['why']}")
            if r["name"] in KNOWN_CAUSES:
                md_lines += ["", f"Cause: {KNOWN_CAUSES[r['name']]}"]
            if r["tail"]:
                md_lines += ["", "```", *r["tail"], "```"]
            if r.get("debug_log"):
                md_lines.append(f"(trace with GPUWIRE_DEBUG=1: `{r['debug_log']}` in the run's output folder)")
            md_lines.append("")
    if smi is not None:
        md_lines += ["", "### `gpuwire smi` from a client with no GPU", ""]
        md_lines += ["```", f"$ {smi['cmd']}" + (f"   (exit {smi['rc']})" if smi["rc"] else ""),
                     *smi["output"].rstrip().splitlines(), "```"]
    extra = COMPAT / "nvml_comparison.md"  # tests/gpu/gpu-nvml's comparison, kept by hand beside the runs
    if extra.exists():
        md_lines += ["", extra.read_text().rstrip()]
    md_lines += ["", "### The workloads", "", "| workload | what it does | seconds native / gpuwire |", "|---|---|---|"]
    for r in rows:
        md_lines.append(f"| {r['name']} | {cell(r['what'])} | {r['native']['wall_s']} / {r['gpuwire']['wall_s']} |")
    suites = COMPAT / "suites.md"  # the real suites' tables (compat/render_suites.py), kept between runs
    if suites.exists():
        md_lines += ["", "<!-- suites:begin -->", suites.read_text().rstrip(), "<!-- suites:end -->"]
    numba = COMPAT / "numba_suite.md"  # numba-cuda's suite (tests/gpu/numba-suite-run), written by hand per run
    if numba.exists():
        md_lines += ["", numba.read_text().rstrip()]
    text = "\n".join(md_lines) + "\n"
    (ctx.outdir / "compatibility.md").write_text(text)
    if not ctx.args.dry_run and not ctx.args.no_docs:
        DOC.write_text(text)
        RESULTS.write_text(results)
    return counts


def print_summary(rows: list, counts: dict, meta: dict) -> None:
    print()
    print(f"compat: {meta['date']}  {meta['card']}")
    print(f"{'workload':32} {'result':15} {'rtrips':>7}  {'native':12} {'gpuwire':12}  note")
    for r in rows:
        verdict = r["verdict"] + ("~" if r["verdict"] == "pass" and r["tolerance"] != "exact" and not r["exact"] else "")
        rt = r["gpuwire"]["round_trips"]
        print(f"{r['name']:32} {verdict:15} {rt if rt is not None else '-':>7}  {r['native']['short']:12} "
              f"{r['gpuwire']['short']:12}  {r['why'][:90]}")
    print(f"compat: {counts.get('pass', 0)} passed, {counts.get('FAIL', 0)} failed, "
          f"{counts.get(rules.NATIVE_FAILED, 0)} native failures, {counts.get('skipped', 0)} skipped "
          f"({len(rows)} workloads, {meta['wall_s']:.0f} s; ~ = within tolerance, not bit-exact)")


# ---------------------------------------------------------------- main

def check_scripts() -> int:
    """Compile every Python file of the suite in memory (no __pycache__ written)."""
    bad = 0
    files = sorted(COMPAT.rglob("*.py"))
    for path in files:
        try:
            compile(path.read_text(), str(path), "exec")
        except SyntaxError as e:
            print(f"compat --check: {path.relative_to(ROOT)}: {e}")
            bad += 1
    print(f"compat --check: {len(files) - bad} of {len(files)} scripts compile")
    return 1 if bad else 0


def rejudge_file(args, path: Path, outdir: Path) -> int:
    """Judge a results.json again; the recorded files (docs/, compat/) are left alone."""
    doc, changes = rules.rejudge(json.loads(path.read_text()))
    rows, smi = doc.pop("workloads"), doc.pop("gpuwire_smi", None)
    doc.pop("counts", None)
    outdir.mkdir(parents=True, exist_ok=True)
    args.no_docs = True
    ctx = Context(args, outdir, 0.0, doc.get("server", ""))
    shutil.rmtree(ctx.tmp, ignore_errors=True)
    counts = write_reports(ctx, doc, rows, smi)
    for name, old, new, why in changes:
        print(f"compat --rejudge: {name}: {old} -> {new}: {why}")
    print(f"compat --rejudge: {len(changes)} verdicts changed; now {counts}; wrote {outdir}/results.json "
          f"and compatibility.md", flush=True)
    return 1 if changes else 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="compat/run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir", nargs="?", help="where results and logs go (default $OUT, else build/compat)")
    ap.add_argument("--dry-run", action="store_true",
                    help="no GPU: fake workloads (compat/selftest) and the CUDA C programs, CPU stand-in driver, "
                         "no nogpu wrapper, docs/compatibility.md left alone; exit 1 unless every verdict is the expected one")
    ap.add_argument("--check", action="store_true", help="compile every Python script of the suite and exit")
    ap.add_argument("--only", metavar="NAMES", help="comma-separated workload names or globs")
    ap.add_argument("--jobs", type=int, default=int(os.environ.get("COMPAT_JOBS", 6)),
                    help="runs at a time (default %(default)s)")
    ap.add_argument("--budget", type=float, default=float(os.environ.get("COMPAT_BUDGET_S", 500)),
                    help="seconds for the whole suite, build included (default %(default)s)")
    ap.add_argument("--port", type=int, default=int(os.environ.get("COMPAT_PORT", 7770)))
    ap.add_argument("--no-docs", action="store_true",
                    help="do not write docs/compatibility.md and compat/results.json (only OUTDIR)")
    ap.add_argument("--no-build", action="store_true", help="skip make -C native and the nvcc builds")
    ap.add_argument("--render", metavar="RESULTS_JSON",
                    help="only rewrite docs/compatibility.md and compat/results.json from a run's results.json "
                         "(e.g. after compat/known_causes.json changed); needs no GPU")
    ap.add_argument("--rejudge", metavar="RESULTS_JSON",
                    help="judge a run's results.json again with compat/verdict.py, list the verdicts that change "
                         "and write the result to OUTDIR (default build/compat-rejudge) only; exit 1 when a verdict "
                         "changes; needs no GPU")
    args = ap.parse_args(argv)
    if args.rejudge:
        return rejudge_file(args, Path(args.rejudge), Path(args.outdir or ROOT / "build" / "compat-rejudge"))
    if args.render:
        doc = json.loads(Path(args.render).read_text())
        rows, smi = doc.pop("workloads"), doc.pop("gpuwire_smi", None)
        doc.pop("counts", None)
        ctx = Context(args, Path(tempfile.mkdtemp(prefix="gpuwire-compat-render-")), 0.0, doc.get("server", ""))
        counts = write_reports(ctx, doc, rows, smi)
        print(f"compat: rendered {DOC} from {args.render}: {counts}", flush=True)
        return 0
    if args.check:
        return check_scripts()

    t_start = time.monotonic()
    end = t_start + args.budget
    outdir = Path(args.outdir or os.environ.get("OUT") or ROOT / "build" / "compat").resolve()
    if args.dry_run and not args.outdir:
        outdir = ROOT / "build" / "compat-dry-run"
    (outdir / "logs").mkdir(parents=True, exist_ok=True)
    say = lambda msg: print(f"compat: {msg}", flush=True)  # noqa: E731

    workloads = (python_workloads(COMPAT / "selftest") if args.dry_run else python_workloads(COMPAT / "workloads"))
    workloads = select(workloads + program_workloads(), args.only)
    if not workloads:
        say("no workload selected")
        return 2

    with cf.ThreadPoolExecutor(2) as pool:   # facts gathered while the build runs
        f_versions, f_card = pool.submit(versions), pool.submit(card)
        if args.no_build:
            problem = ""
        else:
            say("building natives and compat/programs")
            (outdir / "build.log").write_text("")
            problem = build(outdir / "build.log", programs=any(w.framework == "cuda" for w in workloads))
        vers, the_card = f_versions.result(), f_card.result()
    if problem:
        say(problem)
        print("\n".join(tail_lines(outdir / "build.log", 30)))
        return 1

    port = free_port(args.port)
    addr = f"127.0.0.1:{port}"
    driver = "standin" if args.dry_run else "nvidia"
    server, problem = start_server(port, driver, outdir / "server.log")
    if problem:
        say(problem)   # go on: every gpuwire run will fail and say why
    ctx = Context(args, outdir, end, addr)
    say(f"server {addr} (driver {driver}); {len(workloads)} workloads, {args.jobs} runs at a time, "
        f"{ctx.remaining():.0f} s left")

    # Longest first, so the slow ones do not start last; native and gpuwire runs side by side.
    order = sorted(workloads, key=lambda w: (-w.timeout, w.name))
    runs: dict = {}
    smi = None
    try:
        with cf.ThreadPoolExecutor(max(1, args.jobs)) as pool:
            f_smi = pool.submit(gpuwire_smi, ctx)
            futs = {pool.submit(execute, ctx, w, mode): (w.name, mode) for w in order for mode in ("native", "gpuwire")}
            for fut in cf.as_completed(futs):
                name, mode = futs[fut]
                try:
                    run = fut.result()
                except Exception as e:  # a runner bug must not lose the other results
                    run = Run(mode, error=f"runner error: {type(e).__name__}: {e}")
                runs[(name, mode)] = run
                state = run.skipped or run.error or "ok"
                say(f"{name} {mode}: {state} ({run.wall:.1f} s)")
            smi = f_smi.result()

        rows = []
        verdicts = {}
        for w in sorted(workloads, key=lambda w: w.name):
            nat, rem = runs[(w.name, "native")], runs[(w.name, "gpuwire")]
            verdicts[w.name] = judge(nat, rem)
        failed = [w for w in workloads if verdicts[w.name]["verdict"] == "FAIL"]
        failed.sort(key=lambda w: (not runs[(w.name, "gpuwire")].error, w.name))   # crashes and timeouts first
        debug_logs = {}
        if failed and ctx.remaining() > 30:
            say(f"rerunning {min(len(failed), 8)} failed gpuwire runs with GPUWIRE_DEBUG=1")
            with cf.ThreadPoolExecutor(max(1, args.jobs)) as pool:
                futs = {pool.submit(debug_rerun, ctx, w): w.name for w in failed[:8]}
                for fut in cf.as_completed(futs):
                    try:
                        debug_logs[futs[fut]] = fut.result()
                    except Exception as e:
                        debug_logs[futs[fut]] = f"(debug rerun failed: {e})"
    finally:
        stop(server)
        shutil.rmtree(ctx.tmp, ignore_errors=True)

    for w in sorted(workloads, key=lambda w: w.name):
        nat, rem = runs[(w.name, "native")], runs[(w.name, "gpuwire")]
        v = verdicts[w.name]
        res = nat.result or rem.result or {}

        def side(run):
            return {"short": short(run), "rc": run.rc, "timed_out": run.timed_out, "wall_s": run.wall,
                    "error": run.error or run.skipped, "skipped": run.skipped,
                    "digest": run.result.get("digest") if run.result else None,
                    "notes": run.result.get("notes") if run.result else None,
                    "result": run.result,   # all of it, so --rejudge can judge it again
                    "round_trips": rtrips(run) if run.mode == "gpuwire" else None,
                    "stats": {k: run.stats.get(k) for k in ("calls", "round_trips", "bytes_to_server",
                                                             "bytes_from_server")} if run.stats else None}
        rows.append({"name": w.name, "framework": vers.get(w.framework, w.framework), "framework_key": w.framework,
                     "what": w.what, "tolerance": res.get("tolerance", "exact"), "verdict": v["verdict"],
                     "why": v["why"], "tail": v["tail"], "exact": v["exact"], "debug_log": debug_logs.get(w.name),
                     "expect": w.expect or None, "native": side(nat), "gpuwire": side(rem)})
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%MZ"), "card": the_card,
            "commit": commit(), "command": "bash compat/run " + (" ".join(sys.argv[1:]) or ""),
            "jobs": args.jobs, "budget_s": args.budget, "wall_s": round(time.monotonic() - t_start, 1),
            "versions": vers, "dry_run": args.dry_run, "server": addr}
    counts = write_reports(ctx, meta, rows, smi)
    print_summary(rows, counts, meta)
    if args.dry_run:
        wrong = [r for r in rows if r["expect"] and r["expect"] != r["verdict"]]
        for r in wrong:
            print(f"compat --dry-run: {r['name']}: expected {r['expect']}, got {r['verdict']} ({r['why']})")
        print(f"compat --dry-run: {'every verdict as expected' if not wrong else f'{len(wrong)} unexpected verdicts'}")
        return 1 if wrong else 0
    return 0 if counts.get("FAIL", 0) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
