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
