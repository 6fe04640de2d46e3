"""GPU leases: who may use which GPU, decided before a client's worker starts.

A lease covers one GPU, all of them, or any N of them (`count`: which ones is
decided at the grant: the first N in server order that no held lease stands
in the way of), shared or exclusive, with an optional memory cap (enforced by
the worker). Two leases conflict when their GPUs overlap and either is
exclusive. Requests are served strictly in arrival order: a request is granted
only when it conflicts with no lease held and with no earlier request still
waiting, so a queued exclusive lease is not starved by a stream of shared ones.
A waiting "any N" request has no GPUs yet, so it counts as wanting all of them
for those behind it (it cannot be overtaken by one that would take the GPUs it
waits for). Thread-safe; the server's connection threads block in `wait`.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field


class LeaseRefused(Exception):
    pass


@dataclass(eq=False)  # identity: two requests are never "equal"
class Lease:
    """A request; `granted` is set once it holds its GPUs."""
    id: int
    exclusive: bool
    gpus: frozenset[int]         # for a count request: empty until granted
    mem_cap: int
    owner: str                   # for humans: "host pid prog (session N)"
    session: int | None = None
    count: int | None = None     # "any N GPUs": N; None: gpus says which
    requested: float = field(default_factory=time.monotonic)
    granted: float | None = None
    within: frozenset[int] | None = None  # a Slurm job's GPUs: the only ones it may get (None: any)

    @property
    def mode(self) -> str:
        return "exclusive" if self.exclusive else "shared"

    def conflicts(self, other: "Lease") -> bool:
        return bool(self.gpus & other.gpus) and (self.exclusive or other.exclusive)

    def describe_gpus(self, gpu_count: int) -> str:
        if self.count is not None and self.granted is None:
            return f"any {self.count} GPU{'s' if self.count != 1 else ''}"
        if len(self.gpus) == gpu_count and gpu_count != 1:
            return "all GPUs"
        return "GPU " + ",".join(str(g) for g in sorted(self.gpus))


@dataclass
class QueuePosition:
    position: int        # 1 = next in line
    waiting: int         # requests waiting in all
    holder: str          # who holds (one of) the conflicting leases, or who is ahead
    waited: float        # seconds since the request


class LeaseManager:
    def __init__(self, gpu_count: int):
        self.gpu_count = max(1, gpu_count)
        self._cond = threading.Condition()
        self._ids = itertools.count(1)
        self._held: dict[int, Lease] = {}
        self._queue: list[Lease] = []          # waiting, oldest first
        self.granted_total = 0
        self.refused_total = 0
        self.wait_seconds_total = 0.0

    def request(self, exclusive: bool, gpu: int | None, mem_cap: int, owner: str,
                session: int | None = None, count: int | None = None,
                within: frozenset[int] | None = None) -> Lease:
        """Queue a request (granted at once if nothing stands in its way): GPU
        `gpu`, any `count` GPUs, or (neither given) all of them; with `within`
        (a Slurm job's GPUs) "all" and "any N" mean of those only."""
        if gpu is not None and count is not None:
            raise LeaseRefused(f"a lease names either one GPU ({gpu}) or a number of GPUs ({count}), not both")
        if gpu is not None and not 0 <= gpu < self.gpu_count:
            raise LeaseRefused(f"GPU {gpu} does not exist on this server (it has {self.gpu_count}: "
                               f"0..{self.gpu_count - 1})")
        if count is not None and not 1 <= count <= self.gpu_count:
            raise LeaseRefused(f"{count} GPUs asked for, but this server has {self.gpu_count}"
                               if count > 0 else f"a lease on {count} GPUs: ask for 1 or more")
        if within is not None and (not within or not within <= frozenset(range(self.gpu_count))
                                   or (gpu is not None and gpu not in within)
                                   or (count is not None and count > len(within))):
            raise LeaseRefused(f"outside this job's GPUs ({','.join(map(str, sorted(within))) or 'none'})")
        if count is not None:
            gpus: frozenset[int] = frozenset()
        else:
            gpus = (within or frozenset(range(self.gpu_count))) if gpu is None else frozenset([gpu])
        lease = Lease(next(self._ids), exclusive, gpus, mem_cap, owner, session, count=count, within=within)
        with self._cond:
            self._queue.append(lease)
            self._grant_locked()
        return lease

    def _pick_locked(self, lease: Lease, ahead: list[Lease]) -> frozenset[int] | None:
        """The GPUs a waiting request would get now, or None if it must wait."""
        if lease.count is None:
            if any(lease.conflicts(h) for h in self._held.values()) or any(lease.conflicts(a) for a in ahead):
                return None
            return lease.gpus
        # neither a GPU held in a conflicting way nor one an earlier waiting
        # request wants (a waiting count request wants all: _grant_locked)
        free = [g for g in range(self.gpu_count) if (lease.within is None or g in lease.within)
                and not any(g in o.gpus and (o.exclusive or lease.exclusive)
                           for o in itertools.chain(self._held.values(), ahead))]
        return frozenset(free[:lease.count]) if len(free) >= lease.count else None

    def _grant_locked(self) -> None:
        ahead: list[Lease] = []
        granted = False
        for lease in list(self._queue):
            gpus = self._pick_locked(lease, ahead)
            if gpus is None:
                if lease.count is not None:  # for those behind: it may want any GPU (of its job's)
                    lease.gpus = lease.within or frozenset(range(self.gpu_count))
                ahead.append(lease)
                continue
            if lease.count is not None:
                lease.gpus = gpus
            self._queue.remove(lease)
            lease.granted = time.monotonic()
            self._held[lease.id] = lease
            self.granted_total += 1
            self.wait_seconds_total += lease.granted - lease.requested
            granted = True
        if granted:
            self._cond.notify_all()

    def wait(self, lease: Lease, timeout: float) -> bool:
        """Whether `lease` is granted, waiting up to `timeout` seconds for it."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while lease.granted is None:
                left = deadline - time.monotonic()
                if left <= 0 or lease not in self._queue:
                    break
                self._cond.wait(left)
            return lease.granted is not None

    def position(self, lease: Lease) -> QueuePosition | None:
        """Where a waiting request stands, or None once granted or withdrawn."""
        with self._cond:
            if lease not in self._queue:
                return None
            idx = self._queue.index(lease)
            blockers = [h for h in self._held.values() if lease.conflicts(h)]
            blockers += [a for a in self._queue[:idx] if lease.conflicts(a)]
            holder = blockers[0].owner if blockers else "?"
            if blockers and blockers[0].granted is not None:
                holder += f", {blockers[0].mode} for {time.monotonic() - blockers[0].granted:.0f} s"
            elif blockers:
                holder += ", waiting ahead"
            return QueuePosition(idx + 1, len(self._queue), holder, time.monotonic() - lease.requested)

    def release(self, lease: Lease, refused: bool = False) -> None:
        """End a lease or withdraw a request (client gone, refused, worker exited)."""
        with self._cond:
            if lease.id in self._held:
                del self._held[lease.id]
            elif lease in self._queue:
                self._queue.remove(lease)
                if refused:
                    self.refused_total += 1
            else:
                return
            self._grant_locked()
            self._cond.notify_all()

    def snapshot(self) -> dict:
        """Leases held and waiting, for status and metrics (JSON-ready)."""
        now = time.monotonic()

        def one(lease: Lease) -> dict:
            return {"id": lease.id, "mode": lease.mode, "count": lease.count,
                    "gpus": sorted(lease.gpus) if lease.count is None or lease.granted is not None else [],
                    "mem_cap": lease.mem_cap,
                    "owner": lease.owner, "session": lease.session,
                    "held_s": round(now - lease.granted, 3) if lease.granted is not None else None,
                    "waited_s": round((lease.granted or now) - lease.requested, 3)}

        with self._cond:
            return {"gpu_count": self.gpu_count,
                    "held": [one(h) for h in sorted(self._held.values(), key=lambda x: x.id)],
                    "queued": [one(q) for q in self._queue],
                    "granted_total": self.granted_total, "refused_total": self.refused_total,
                    "wait_seconds_total": round(self.wait_seconds_total, 3)}


_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40,
          "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
          "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "b": 1}


def parse_size(text: str) -> int:
    """'8G' / '8GiB' (binary), '8GB' (decimal), '1073741824' -> bytes. Raises ValueError."""
    t = text.strip().lower().replace(" ", "")
    num = t.rstrip("kmgtib")
    unit = t[len(num):]
    if unit not in _UNITS or not num:
        raise ValueError(f"bad size {text!r}: use bytes or a suffix K, M, G, T (binary) or KB, MB, GB, TB")
    try:
        value = float(num)
    except ValueError:
        raise ValueError(f"bad size {text!r}") from None
    if value < 0:
        raise ValueError(f"bad size {text!r}: negative")
    return int(value * _UNITS[unit])
