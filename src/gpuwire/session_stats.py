"""Per-session counters from the worker (calls, round trips, bytes, busy),
read from a shared memory block the server creates for
each worker; its layout is declared in codegen/protocol.txt and generated
for both sides (src/gpuwire/wire_generated.py here). Also the per-second rates status and the dashboard
show, from samples of any counters.
"""

from __future__ import annotations

import collections
import mmap
import os
import struct
import time

from gpuwire.wire_generated import SSTATS_ENV as ENV
from gpuwire.wire_generated import SSTATS_FIELDS as FIELDS  # the u64 fields after (u32 magic, u32 size), in order
from gpuwire.wire_generated import SSTATS_MAGIC as MAGIC

SIZE = 4096
HEADER = 8


class Block:
    """The server's side of one worker's block: create() before starting the
    worker (pass fd and ENV to it), close_fd() once it runs, read() any time."""

    def __init__(self, name: str):
        self.fd = os.memfd_create(name, os.MFD_CLOEXEC)
        try:
            os.ftruncate(self.fd, SIZE)
            self.map = mmap.mmap(self.fd, SIZE, mmap.MAP_SHARED, mmap.PROT_READ)
        except OSError:
            os.close(self.fd)
            raise

    def close_fd(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def close(self) -> None:
        self.close_fd()
        try:
            self.map.close()
        except (BufferError, ValueError):
            pass

    def read(self) -> dict | None:
        """The counters, or None while the worker has not set the block up."""
        try:
            magic, size = struct.unpack_from("<II", self.map, 0)
        except (ValueError, struct.error):
            return None
        if magic != MAGIC or size < HEADER + 8:
            return None
        n = min(len(FIELDS), (min(size, SIZE) - HEADER) // 8)
        values = struct.unpack_from(f"<{n}Q", self.map, HEADER)
        out = dict(zip(FIELDS, values))
        for name in FIELDS[n:]:
            out[name] = 0
        return out


def create(session_id: int) -> Block | None:
    try:
        return Block(f"gpuwire-session-{session_id}")
    except (OSError, AttributeError):  # no memfd (not Linux): no per-session counters
        return None


def busy_seconds(counters: dict | None) -> float | None:
    """How long the request running now has run, or None."""
    if not counters or not counters.get("busy_since_ns"):
        return None
    return max(0.0, (time.monotonic_ns() - counters["busy_since_ns"]) / 1e9)


class Rates:
    """Per-second rates of a tuple of counters over the last `window` seconds,
    from samples taken whenever someone asks (at most one per `step`)."""

    def __init__(self, window: float = 5.0, step: float = 0.2):
        self.window, self.step = window, step
        self.samples: collections.deque[tuple[float, tuple[float, ...]]] = collections.deque()

    def update(self, values: tuple[float, ...], now: float | None = None) -> tuple[float, ...] | None:
        now = time.monotonic() if now is None else now
        if not self.samples or now - self.samples[-1][0] >= self.step:
            self.samples.append((now, values))
        while len(self.samples) > 2 and now - self.samples[1][0] >= self.window:
            self.samples.popleft()
        t0, v0 = self.samples[0]
        if now - t0 < self.step:
            return None
        return tuple(max(0.0, (a - b) / (now - t0)) for a, b in zip(values, v0))
