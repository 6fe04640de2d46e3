"""`gpuwire run --slurm`: a remote GPU allocated by Slurm (docs/scale-out.md).

    gpuwire run --slurm --gres gpu:1 -- ./app

runs `salloc ... -- gpuwire slurm attach -- ./app`. salloc queues the job as
Slurm's rules say (partitions, limits, accounts, fair share) and, once the
job runs, starts `attach` here, on this machine, holding the allocation. The
job's prolog on the node Slurm chose has asked that node's gpuwire server
for a token bound to the job's GPUs; `attach` fetches it with a one-task step
on that node (`srun ... gpuwire slurm credentials`: Slurm itself checks that
only the job's user runs it) and exec's `gpuwire run` with it. When the
command exits salloc ends the job; the epilog revokes the token, which ends
the session and frees the lease. A job cancelled or over its time limit gets
the same epilog, so the server frees its GPUs whatever happens here.

While salloc waits, a thread here polls squeue and prints the job's state.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import signal
import subprocess
import sys
import threading
import time

REMOTE_ENV = "GPUWIRE_SLURM_REMOTE"   # how to run gpuwire on the nodes (default: gpuwire)
POLL_S = 1.0
REPEAT_S = 15.0                        # a state line is repeated this often while it holds


def _say(text: str) -> None:
    print(f"gpuwire run: {text}", file=sys.stderr, flush=True)


def salloc_command(job_name: str, gres: str | None, partition: str | None, time_limit: str | None,
                   attach: list[str]) -> list[str]:
    # --kill-command: a job cancelled or past its time limit ends CMD too (SIGTERM), as it would a task
    cmd = ["salloc", "--quiet", "--kill-command=TERM", f"--job-name={job_name}"]
    if gres:
        cmd.append(f"--gres={gres}")
    if partition:
        cmd.append(f"--partition={partition}")
    if time_limit:
        cmd.append(f"--time={time_limit}")
    return cmd + ["--"] + attach


def describe_pending(line: str) -> tuple[str, str] | None:
    """squeue's "%i|%T|%r" line -> (job id, "pending (Resources)"), None if empty."""
    parts = line.strip().split("|")
    if len(parts) != 3 or not parts[0]:
        return None
    job, state, reason = parts
    state = state.lower()
    return job, (f"{state} ({reason})" if reason and reason != "None" else state)


class Progress(threading.Thread):
    """Polls squeue for the job named job_name until it runs or `done` is set."""

    def __init__(self, job_name: str, done: threading.Event):
        super().__init__(daemon=True, name="gpuwire-slurm-progress")
        self.job_name = job_name
        self.done = done

    def run(self) -> None:
        last, last_at = None, 0.0
        while not self.done.wait(POLL_S):
            try:
                r = subprocess.run(["squeue", "-h", "-n", self.job_name, "-o", "%i|%T|%r"],
                                   capture_output=True, text=True, timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                continue
            got = describe_pending(r.stdout.splitlines()[0]) if r.stdout.strip() else None
            if got is None:
                continue
            job, text = got
            if text.startswith("running") or text.startswith("configuring"):
                return
            if text != last or time.monotonic() - last_at >= REPEAT_S:
                _say(f"waiting for Slurm: job {job} {text}")
                last, last_at = text, time.monotonic()


def run_with_slurm(cmd: list[str], gres: str | None, partition: str | None, time_limit: str | None,
                   stats: str | None, quiet: bool) -> int:
    """salloc the job, run cmd through `gpuwire slurm attach` inside it; salloc's exit status."""
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        _say("no command given (usage: gpuwire run --slurm [--gres gpu:N] -- CMD ARGS...)")
        return 2
    attach = [sys.executable, "-m", "gpuwire", "slurm", "attach"]
    if stats:
        attach += ["--stats", os.path.abspath(stats)]
    if quiet:
        attach.append("--quiet")
    job_name = f"gpuwire-{secrets.token_hex(4)}"
    salloc = salloc_command(job_name, gres or "gpu:1", partition, time_limit, attach + ["--"] + cmd)
    done = threading.Event()
    if not quiet:
        Progress(job_name, done).start()
    try:
        proc = subprocess.Popen(salloc)
    except OSError as e:
        _say(f"cannot run salloc (is Slurm's client installed here?): {e.strerror or e}")
        return 127

    def forward(signum, _frame):  # salloc cancels a pending job, or ends a running one, on these
        try:
            proc.send_signal(signum)
        except OSError:
            pass

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        code = proc.wait()
    finally:
        done.set()
        for s, h in old.items():
            signal.signal(s, h)
    return code if code >= 0 else 128 - code


def fetch_credentials(env) -> dict:
    """The job's server and token, from its node (a one-task step). Raises RuntimeError."""
    remote = shlex.split(env.get(REMOTE_ENV) or "gpuwire")
    step = ["srun", "--quiet", "-N1", "-n1", "--overlap", "--gres=none"] + remote + ["slurm", "credentials"]
    try:
        r = subprocess.run(step, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RuntimeError(f"cannot run a step of the job ({' '.join(step[:6])} ...): {e}") from e
    if r.returncode != 0:
        raise RuntimeError(f"the job's node gave no gpuwire token: {(r.stderr.strip() or r.stdout.strip())[-400:]}")
    try:
        creds = json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as e:
        raise RuntimeError(f"the job's node answered {r.stdout[-200:]!r}, not JSON") from e
    if not isinstance(creds, dict) or not isinstance(creds.get("server"), str) or not isinstance(
            creds.get("token"), str):
        raise RuntimeError("the job's node answered without a server and token")
    return creds


def attach(cmd: list[str], stats: str | None, quiet: bool) -> int:
    """Inside salloc: fetch the job's token and exec `gpuwire run` with it."""
    from gpuwire.runner import run

    job = os.environ.get("SLURM_JOB_ID", "?")
    try:
        creds = fetch_credentials(os.environ)
    except RuntimeError as e:
        _say(f"Slurm job {job}: {e}")
        return 1
    os.environ["GPUWIRE_TOKEN"] = creds["token"]
    os.environ.pop("GPUWIRE_TOKEN_FILE", None)
    if not quiet:
        gpus = creds.get("gpus")
        _say(f"Slurm job {job}: {os.environ.get('SLURM_JOB_NODELIST', '?')}, gpuwire server {creds['server']}"
             + (f", GPUs {','.join(map(str, gpus))}" if isinstance(gpus, list) else ""))
    return run(cmd, server=creds["server"], stats=stats, quiet=quiet)
