"""The server's side of Slurm jobs (docs/scale-out.md): admin requests that mint
and revoke a job's token, and the GPUs a job token's leases are held to.

A Slurm prolog authenticates with an *admin* token (role "admin" in the tokens
file) and sends, on a status probe's connection, one JSON request per ADMIN frame
(codegen/protocol.txt), answered with one ADMIN frame:

  {"op": "mint", "job": "42", "gpus": [0, 1]}        bind these GPUs (a GRES job)
  {"op": "mint", "job": "42", "count": 2, "pool": [2, 3]}  any 2 of the pool (a licence job)
  {"op": "revoke", "job": "42"}                       end the job's tokens and sessions
  {"op": "list"}                                      the job tokens held now

Every field is checked here as hostile input. A job's tokens all share the
job's GPUs (one token per node of the job); GPUs bound to one live job are
never given to another. Standard library only: the server imports this.
"""

from __future__ import annotations

import json
import re
import signal
import threading
import time

from gpuwire.auth import AuthError, TokenEntry, TokenStore
from gpuwire.leases import LeaseRefused

REQUEST_MAX = 64 << 10           # an admin request's JSON, at most
JOB_RE = re.compile(r"^[0-9]{1,20}$")
GPUS_MAX = 1024
EXPIRES_MAX_S = 366 * 86400      # a job token lives at most this long without a revoke
ROLE_ADMIN, ROLE_JOB = "admin", "job"
KILL_GRACE = 3.0


class AdminError(Exception):
    """A request refused; the message goes back to the admin client."""


def _job(req: dict) -> str:
    job = req.get("job")
    if not isinstance(job, str) or not JOB_RE.match(job):
        raise AdminError("job must be a Slurm job id: 1 to 20 digits, as a string")
    return job


def _indexes(value, what: str, gpu_count: int) -> tuple[int, ...]:
    if not isinstance(value, list) or not 0 < len(value) <= GPUS_MAX:
        raise AdminError(f"{what} must be a non-empty list of GPU indexes")
    if any(type(g) is not int or not 0 <= g < gpu_count for g in value):
        raise AdminError(f"{what}: every index must be an integer from 0 to {gpu_count - 1} (this server "
                         f"has {gpu_count} GPUs)")
    if len(set(value)) != len(value):
        raise AdminError(f"{what}: an index is repeated")
    return tuple(sorted(value))


def parse_request(body: bytes, gpu_count: int) -> dict:
    """The checked request: op, and for mint job, gpus or count+pool, expires_s."""
    if len(body) > REQUEST_MAX:
        raise AdminError(f"admin request of {len(body)} bytes; at most {REQUEST_MAX}")
    try:
        req = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise AdminError(f"admin request is not JSON: {e}") from None
    if not isinstance(req, dict):
        raise AdminError("admin request must be a JSON object")
    op = req.get("op")
    if op == "list":
        return {"op": "list"}
    if op == "revoke":
        return {"op": "revoke", "job": _job(req)}
    if op != "mint":
        raise AdminError("op must be mint, revoke or list")
    out: dict = {"op": "mint", "job": _job(req)}
    if ("gpus" in req) == ("count" in req):
        raise AdminError("mint takes either gpus (the GPUs Slurm gave the job) or count (with an optional pool)")
    if "gpus" in req:
        out["gpus"] = _indexes(req["gpus"], "gpus", gpu_count)
    else:
        count = req["count"]
        if type(count) is not int or not 1 <= count <= gpu_count:
            raise AdminError(f"count must be an integer from 1 to {gpu_count}")
        out["count"] = count
        out["pool"] = _indexes(req["pool"], "pool", gpu_count) if "pool" in req else tuple(range(gpu_count))
        if count > len(out["pool"]):
            raise AdminError(f"count {count} is more than the pool's {len(out['pool'])} GPUs")
    expires = req.get("expires_s", 0)
    if type(expires) not in (int, float) or not 0 <= expires <= EXPIRES_MAX_S or expires != expires:
        raise AdminError(f"expires_s must be 0 (until revoked) or up to {EXPIRES_MAX_S} seconds")
    out["expires_s"] = float(expires)
    return out


def pick_gpus(req: dict, live: list[TokenEntry]) -> tuple[int, ...]:
    """The GPUs job req["job"] gets: those its live tokens already have (another
    node of the same job), else the asked ones or any count of the pool, none of
    them bound to another live job. Raises AdminError."""
    job = req["job"]
    mine = {e.gpus for e in live if e.role == ROLE_JOB and e.job == job}
    if mine:
        gpus = next(iter(mine))
        if "gpus" in req and req["gpus"] != gpus:
            raise AdminError(f"job {job} already holds GPUs {','.join(map(str, gpus))} on this server")
        if "count" in req and req["count"] != len(gpus):
            raise AdminError(f"job {job} already holds {len(gpus)} GPUs on this server")
        return gpus
    taken: dict[int, str] = {g: e.job for e in live if e.role == ROLE_JOB for g in e.gpus}
    if "gpus" in req:
        busy = [g for g in req["gpus"] if g in taken]
        if busy:
            raise AdminError(f"GPU {busy[0]} is bound to job {taken[busy[0]]}, still live here (its epilog has "
                             f"not revoked it): Slurm and this server disagree")
        return req["gpus"]
    free = [g for g in req["pool"] if g not in taken]
    if len(free) < req["count"]:
        raise AdminError(f"{req['count']} GPUs asked for job {job} but only {len(free)} of the pool are not "
                         f"bound to a live job (a licence count larger than the pool?)")
    return tuple(free[:req["count"]])


def lease_scope(entry: TokenEntry | None, gpu: int | None, count: int | None
                ) -> tuple[int | None, int | None, frozenset[int] | None]:
    """(gpu, count, within) for LeaseManager.request: a job token's client sees
    its job's GPUs as GPUs 0..n-1 (as CUDA_VISIBLE_DEVICES under Slurm does);
    any other token's request passes unchanged. Raises LeaseRefused."""
    if entry is None or entry.role != ROLE_JOB:
        return gpu, count, None
    gpus = entry.gpus
    if not gpus:
        raise LeaseRefused(f"Slurm job {entry.job}'s token is bound to no GPU")
    if gpu is not None:
        if gpu >= len(gpus):
            raise LeaseRefused(f"GPU {gpu} asked, but Slurm job {entry.job} has {len(gpus)} GPU"
                               f"{'s' if len(gpus) != 1 else ''} here (0..{len(gpus) - 1})")
        gpu = gpus[gpu]
    if count is not None and count > len(gpus):
        raise LeaseRefused(f"{count} GPUs asked, but Slurm job {entry.job} has {len(gpus)} here")
    return gpu, count, frozenset(gpus)


class JobAdmin:
    """Answers admin requests for one server: tokens in `tokens`, sessions and
    workers in `registry` (gpuwire.server.state.Registry)."""

    def __init__(self, tokens: TokenStore | None, registry, gpu_count: int, log):
        self.tokens = tokens
        self.registry = registry
        self.gpu_count = gpu_count
        self.log = log
        self._lock = threading.Lock()  # one mint or revoke at a time

    def answer(self, token_id: str | None, body: bytes) -> bytes:
        """The JSON reply to one admin request from a session authenticated as token_id."""
        try:
            reply = self._answer(token_id, body)
            reply["ok"] = True
        except AdminError as e:
            reply = {"ok": False, "error": str(e)}
        except (AuthError, OSError) as e:
            self.log.error(f"admin request failed: {e}")
            reply = {"ok": False, "error": f"the server cannot use its tokens file: {e}"}
        return json.dumps(reply, separators=(",", ":")).encode()

    def _answer(self, token_id: str | None, body: bytes) -> dict:
        if self.tokens is None:
            raise AdminError("this server authenticates nobody (no tokens file), so it takes no admin requests")
        caller = self.tokens.entry(token_id) if token_id else None
        if caller is None or caller.role != ROLE_ADMIN:
            raise AdminError("admin requests need an admin token (gpuwire slurm admin-token on the server)")
        req = parse_request(body, self.gpu_count)
        with self._lock:
            if req["op"] == "list":
                return {"jobs": self._list()}
            if req["op"] == "revoke":
                return self.revoke(req["job"])
            return self._mint(req)

    def _list(self) -> list[dict]:
        assert self.tokens is not None
        with self.registry.lock:
            by_token: dict[str, int] = {}
            for s in self.registry.sessions.values():
                if s.token:
                    by_token[s.token] = by_token.get(s.token, 0) + 1
        return [{"job": e.job, "token_id": e.id, "gpus": list(e.gpus), "expires": e.expires or None,
                 "sessions": by_token.get(e.id, 0)}
                for e in self.tokens.entries() if e.role == ROLE_JOB and not e.expired()]

    def _mint(self, req: dict) -> dict:
        assert self.tokens is not None
        expires = time.time() + req["expires_s"] if req["expires_s"] else 0.0
        token, entry = self.tokens.create(f"slurm-job-{req['job']}", role=ROLE_JOB, job=req["job"],
                                          expires=expires, check=lambda live: pick_gpus(req, live))
        self.log.info("job token minted", job=req["job"], token=entry.id, gpus=",".join(map(str, entry.gpus)))
        return {"job": req["job"], "token": token, "token_id": entry.id, "gpus": list(entry.gpus)}

    def revoke(self, job: str) -> dict:
        """Revoke job's tokens and end every session that authenticated with one."""
        assert self.tokens is not None
        gone = self.tokens.revoke("", job=job)
        ids = {e.id for e in gone if e.job == job}
        ended = end_sessions(self.registry, {e.id for e in gone})  # expired ones' too
        self.log.info("job tokens revoked", job=job, tokens=len(ids), sessions_ended=ended)
        return {"job": job, "revoked": len(ids), "sessions_ended": ended}


def end_sessions(registry, token_ids: set[str]) -> int:
    """SIGTERM the workers of sessions authenticated with one of token_ids (SIGKILL
    after a grace period); their leases go when the workers exit. Sessions still
    queued notice their token is gone (admission checks it while they wait)."""
    if not token_ids:
        return 0
    with registry.lock:
        procs = [registry.workers[s.id] for s in registry.sessions.values()
                 if s.token in token_ids and s.id in registry.workers]
    for proc in procs:
        try:
            proc.send_signal(signal.SIGTERM)
        except OSError:
            pass
        threading.Thread(target=_kill_after_grace, args=(proc,), daemon=True).start()
    return len(procs)


def _kill_after_grace(proc) -> None:
    try:
        proc.wait(KILL_GRACE)
    except Exception:  # subprocess.TimeoutExpired: still running
        try:
            proc.kill()
        except OSError:
            pass
