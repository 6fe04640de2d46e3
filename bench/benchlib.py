"""Shared by the PyTorch benchmarks: common options, device synchronize, the JSON result line.

Every benchmark takes --exact N (set-up and warm-up as usual, then exactly N units of the
measured work, N = 0 for set-up only: bench/suite.py subtracts two such runs' round-trip
counts to get round trips per unit), --max-seconds S (stop the measured loop early, after a
minimum number of units) and --device (cuda; cpu for smoke tests without a GPU).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--exact", type=int, default=-1, help="exactly N measured units (0: set-up only)")
    p.add_argument("--max-seconds", type=float, default=30.0, help="time budget of the measured loop")
    p.add_argument("--device", default="cuda")
    return p


def sync(torch, device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def emit(bench: str, **fields) -> None:
    print(json.dumps({"bench": bench, **fields}), flush=True)


def fail(bench: str, message: str) -> None:
    emit(bench, error=message)
    sys.exit(1)


def median(values):
    return statistics.median(values) if values else None


now = time.perf_counter


def thread_usage():
    """The calling thread's CPU seconds and context switches so far: (cpu_s, waits, preempted).
    Waits are voluntary switches (the thread blocked: a lock, a socket), preempted the others;
    with the wall time they tell a thread that computes slowly from one that waits."""
    import resource

    u = resource.getrusage(getattr(resource, "RUSAGE_THREAD", resource.RUSAGE_SELF))
    return u.ru_utime + u.ru_stime, u.ru_nvcsw, u.ru_nivcsw


def usage_fields(before, after, units: int, unit: str) -> dict:
    """thread_usage() differences per unit, as result fields."""
    n = max(units, 1)
    return {f"main_thread_cpu_ms_per_{unit}": (after[0] - before[0]) * 1e3 / n,
            f"main_thread_waits_per_{unit}": (after[1] - before[1]) / n,
            f"main_thread_preempted_per_{unit}": (after[2] - before[2]) / n}
