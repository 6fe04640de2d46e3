"""What slurm.conf points at (docs/scale-out.md has the lines): `gpuwire slurm
prolog`, `epilog` and `task-prolog`, plus `credentials` (run in a job step by
`gpuwire run --slurm`) and `admin-token` (once per GPU server).

The prolog (root, on each node of a job, before it starts) asks a gpuwire
server, with the site's admin token, for a token bound to the job's GPUs:
  - a job with GRES gpu on a GPU node: this node's own server, the GPUs Slurm
    gave the job (SLURM_JOB_GPUS);
  - a job holding a remote-GPU licence (Licenses=rgpu_NAME:N in slurm.conf,
    `-L rgpu_NAME:N` on the job): that licence's server, N of its pool.
It keeps the token in JOBS_DIR/JOB.token and what it is for in JOBS_DIR/JOB.json,
both owned by the job's user, mode 600. The TaskProlog (the job's user, before
each task) prints `export NAME=value` lines that Slurm applies to the task:
GPUWIRE_SERVER, GPUWIRE_TOKEN_FILE and `gpuwire run`'s loader redirection, for
licence jobs (their GPUs are remote). The epilog (root, after the job, however
it ended) revokes the job's tokens, which ends its sessions and frees its
leases, and removes the files.

A prolog that exits non-zero makes Slurm drain the node: these commands exit 1
only for a broken site configuration, and otherwise say what failed on
stderr (the slurmd log) and exit 0; the job then runs without remote GPUs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from gpuwire import paths
from gpuwire.auth import TokenStore
from gpuwire.slurm import admin_client
from gpuwire.slurm.jobs import JOB_RE, ROLE_ADMIN

DEFAULT_CONFIG = "/etc/gpuwire/slurm.toml"
CONFIG_ENV = "GPUWIRE_SLURM_CONFIG"
LICENSE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
EXPIRY_GRACE_S = 3600.0   # a job token outlives its job's time limit by this much, if no epilog revoked it


class SiteConfigError(Exception):
    pass


@dataclass
class LicenseServer:
    """A remote-GPU licence: its gpuwire server and the server's GPUs it counts."""
    name: str
    server: str
    pool: list[int] | None = None       # None: all of the server's GPUs
    admin_token_file: Path | None = None  # None: the site's


@dataclass
class SiteConfig:
    jobs_dir: Path = Path("/run/gpuwire-slurm")
    admin_token_file: Path = Path("/etc/gpuwire/slurm-admin.token")
    scontrol: str = "scontrol"
    local_server: str | None = None     # this node's own server, as the prolog reaches it
    client_address: str | None = None   # ... and as clients reach it (default: local_server)
    gpu_map: list[int] | None = None    # Slurm's GPU index i is the server's GPU gpu_map[i]
    local_admin_token_file: Path | None = None  # None: the site's
    licenses: dict[str, LicenseServer] = field(default_factory=dict)

    def admin_token(self, server: str) -> str:
        """The admin token for `server`: its own table's admin_token_file, else the site's."""
        path = self.admin_token_file
        if server == self.local_server and self.local_admin_token_file:
            path = self.local_admin_token_file
        for lic in self.licenses.values():
            if lic.server == server and lic.admin_token_file:
                path = lic.admin_token_file
        try:
            return path.read_text().strip()
        except OSError as e:
            raise SiteConfigError(f"cannot read the admin token {path}: {e.strerror or e}") from e


def _text(table: dict, key: str, where: str, default=None):
    value = table.get(key, default)
    if value is not None and not isinstance(value, str):
        raise SiteConfigError(f"{where}: {key} must be a string")
    return value


def _index_list(table: dict, key: str, where: str) -> list[int] | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not value or any(type(g) is not int or g < 0 for g in value):
        raise SiteConfigError(f"{where}: {key} must be a non-empty list of GPU indexes")
    return value


def load_config(path: str | None = None) -> SiteConfig:
    """The site's settings (TOML: --config, else $GPUWIRE_SLURM_CONFIG, else /etc/gpuwire/slurm.toml)."""
    from gpuwire.config import ConfigError, toml_module

    path = path or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG
    try:
        tomllib = toml_module()
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except ConfigError as e:
        raise SiteConfigError(str(e)) from e
    except OSError as e:
        raise SiteConfigError(f"cannot read {path}: {e.strerror or e}") from e
    except ValueError as e:  # TOMLDecodeError
        raise SiteConfigError(f"{path} is not valid TOML: {e}") from e
    cfg = SiteConfig()
    for key in ("jobs_dir", "admin_token_file"):
        if key in data:
            setattr(cfg, key, Path(_text(data, key, path)))
    cfg.scontrol = _text(data, "scontrol", path, cfg.scontrol)
    local = data.get("local", {})
    if not isinstance(local, dict):
        raise SiteConfigError(f"{path}: [local] must be a table")
    cfg.local_server = _text(local, "server", f"{path} [local]")
    cfg.client_address = _text(local, "client_address", f"{path} [local]")
    cfg.gpu_map = _index_list(local, "gpu_map", f"{path} [local]")
    if local.get("admin_token_file") is not None:
        cfg.local_admin_token_file = Path(_text(local, "admin_token_file", f"{path} [local]"))
    licenses = data.get("licenses", {})
    if not isinstance(licenses, dict):
        raise SiteConfigError(f"{path}: [licenses.NAME] tables expected")
    for name, table in licenses.items():
        where = f"{path} [licenses.{name}]"
        if not LICENSE_RE.match(name) or not isinstance(table, dict):
            raise SiteConfigError(f"{where}: a licence name is letters, digits, _ . - (as in slurm.conf)")
        server = _text(table, "server", where)
        if not server:
            raise SiteConfigError(f"{where}: server (HOST:PORT of its gpuwire server) is required")
        token_file = _text(table, "admin_token_file", where)
        cfg.licenses[name] = LicenseServer(name, server, _index_list(table, "pool", where),
                                           Path(token_file) if token_file else None)
    return cfg


# --- what Slurm tells about a job -----------------------------------------------


def job_id(env) -> str:
    job = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID") or ""
    if not JOB_RE.match(job):
        raise SiteConfigError(f"SLURM_JOB_ID={job[:40]!r} is not a job id (run by Slurm?)")
    return job


def job_gpus(env, gpu_map: list[int] | None) -> list[int]:
    """The server's GPU indexes of SLURM_JOB_GPUS ("0,2"), through gpu_map if set."""
    text = env.get("SLURM_JOB_GPUS", "").strip()
    if not text:
        return []
    try:
        slurm = [int(x) for x in text.split(",")]
    except ValueError:
        raise SiteConfigError(f"SLURM_JOB_GPUS={text[:80]!r} is not a list of indexes") from None
    if gpu_map is None:
        return slurm
    if any(not 0 <= i < len(gpu_map) for i in slurm):
        raise SiteConfigError(f"SLURM_JOB_GPUS={text} is outside [local] gpu_map ({len(gpu_map)} entries)")
    return [gpu_map[i] for i in slurm]


def parse_job_record(text: str) -> dict[str, str]:
    """`scontrol show job -o ID`'s KEY=VALUE fields (the last word before each '=')."""
    fields: dict[str, str] = {}
    for word in text.split():
        key, sep, value = word.partition("=")
        if sep:
            fields[key] = value
    return fields


def parse_licenses(text: str) -> dict[str, int]:
    """Licenses=rgpu_a:2,other -> {"rgpu_a": 2, "other": 1} ("(null)": none)."""
    out: dict[str, int] = {}
    if not text or text == "(null)":
        return out
    for item in text.split(","):
        name, _, count = item.partition(":")
        if not LICENSE_RE.match(name):
            continue
        try:
            out[name] = int(count) if count else 1
        except ValueError:
            continue
    return out


def parse_time_limit(text: str) -> float | None:
    """TimeLimit [D-]HH:MM:SS / MM:SS -> seconds; None for UNLIMITED or what does not parse."""
    m = re.match(r"^(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)$", text or "")
    if not m:
        return None
    d, h, mi, s = (int(x) if x else 0 for x in m.groups())
    return float(((d * 24 + h) * 60 + mi) * 60 + s)


def job_record(cfg: SiteConfig, job: str) -> dict[str, str]:
    try:
        r = subprocess.run([cfg.scontrol, "show", "job", "-o", job], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SiteConfigError(f"{cfg.scontrol} show job {job}: {e}") from e
    if r.returncode != 0:
        raise SiteConfigError(f"{cfg.scontrol} show job {job}: {r.stderr.strip()[:200]}")
    return parse_job_record(r.stdout)


# --- the job's files ------------------------------------------------------------------


def job_files(cfg: SiteConfig, job: str) -> tuple[Path, Path]:
    return cfg.jobs_dir / f"{job}.json", cfg.jobs_dir / f"{job}.token"


def _write_private(path: Path, text: str, uid: int | None, gid: int | None) -> None:
    paths.write_private(path, text, uid, gid)


def read_job(cfg: SiteConfig, job: str) -> tuple[dict, str] | None:
    """(record, token) the prolog left for job, or None."""
    meta, tok = job_files(cfg, job)
    try:
        record = json.loads(meta.read_text())
        token = tok.read_text().strip()
    except (OSError, ValueError):
        return None
    return (record, token) if isinstance(record, dict) and isinstance(record.get("server"), str) else None


# --- the commands ------------------------------------------------------------------------


def _say(text: str) -> None:
    print(f"gpuwire slurm: {text}", file=sys.stderr, flush=True)


def prolog(cfg: SiteConfig, env) -> int:
    job = job_id(env)
    uid = int(env["SLURM_JOB_UID"]) if env.get("SLURM_JOB_UID", "").isdigit() else None
    gid = int(env["SLURM_JOB_GID"]) if env.get("SLURM_JOB_GID", "").isdigit() else None
    try:
        record = job_record(cfg, job)
    except SiteConfigError as e:
        _say(f"job {job}: {e}; no licences or time limit known")
        record = {}
    limit = parse_time_limit(record.get("TimeLimit", ""))
    expires_s = limit + EXPIRY_GRACE_S if limit else 0
    gpus = job_gpus(env, cfg.gpu_map)
    req: dict = {"op": "mint", "job": job, "expires_s": expires_s}
    if gpus and cfg.local_server:
        server, client_address, kind = cfg.local_server, cfg.client_address or cfg.local_server, "gres"
        req["gpus"] = gpus
    else:
        held = parse_licenses(record.get("Licenses", ""))
        mine = [(cfg.licenses[n], c) for n, c in held.items() if n in cfg.licenses]
        if not mine:
            return 0  # neither GRES GPUs here nor a remote-GPU licence: nothing to do
        if len(mine) > 1:
            _say(f"job {job} holds {len(mine)} remote-GPU licences; only {mine[0][0].name} is used "
                 f"(one gpuwire server per job)")
        lic, count = mine[0]
        server = client_address = lic.server
        kind = "license"
        req["count"] = count
        if lic.pool is not None:
            req["pool"] = lic.pool
    try:
        reply = admin_client.request(server, cfg.admin_token(server), req)
    except (admin_client.AdminRequestFailed, SiteConfigError) as e:
        _say(f"job {job}: no token minted: {e}")
        return 0
    cfg.jobs_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
    meta, tok = job_files(cfg, job)
    _write_private(tok, str(reply["token"]) + "\n", uid, gid)
    _write_private(meta, json.dumps({"job": job, "server": client_address, "admin_server": server, "kind": kind,
                                     "gpus": reply.get("gpus"), "export": kind == "license"}) + "\n", uid, gid)
    _say(f"job {job}: token {reply.get('token_id')} bound to GPUs {reply.get('gpus')} on {server}")
    return 0


def epilog(cfg: SiteConfig, env) -> int:
    job = job_id(env)
    found = read_job(cfg, job)
    servers = [found[0].get("admin_server") or found[0]["server"]] if found else []
    if cfg.local_server and cfg.local_server not in servers and env.get("SLURM_JOB_GPUS"):
        servers.append(cfg.local_server)  # a prolog that left no file may still have minted here
    for server in servers:
        try:
            reply = admin_client.request(server, cfg.admin_token(server), {"op": "revoke", "job": job})
            if reply.get("revoked"):
                _say(f"job {job}: revoked {reply['revoked']} token(s) on {server}, "
                     f"ended {reply.get('sessions_ended', 0)} session(s)")
        except (admin_client.AdminRequestFailed, SiteConfigError) as e:
            _say(f"job {job}: revoke failed: {e} (the token expires with the job's time limit plus "
                 f"{EXPIRY_GRACE_S:.0f} s)")
    for path in job_files(cfg, job):
        try:
            path.unlink()
        except OSError:
            pass
    return 0


LIVE_STATES = ("RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "STAGE_OUT", "RESIZING", "SIGNALING")


def job_state(cfg: SiteConfig, job: str) -> str | None:
    """The job's JobState, "GONE" if slurmctld no longer knows it, None if it cannot be asked."""
    try:
        r = subprocess.run([cfg.scontrol, "show", "job", "-o", job], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if r.returncode != 0:
        return "GONE" if "invalid job id" in r.stderr.lower() else None
    return parse_job_record(r.stdout).get("JobState") or None


def stale_jobs(jobs: list[dict], state_of) -> list[str]:
    """The job ids among an admin `list` answer whose job is no longer live in
    Slurm (state_of(job) -> JobState, "GONE", or None when Slurm cannot say)."""
    stale = []
    for job in sorted({str(j.get("job")) for j in jobs if isinstance(j, dict)}):
        state = state_of(job) if JOB_RE.match(job) else None
        if state is not None and state.split("+")[0] not in LIVE_STATES:
            stale.append(job)
    return stale


def sweep(cfg: SiteConfig, env) -> int:
    """Revoke, on every server in the site config, the tokens of jobs Slurm says
    have ended (their epilog could not revoke: server or slurmd down). For cron."""
    servers = ([cfg.local_server] if cfg.local_server else []) + [lic.server for lic in cfg.licenses.values()]
    failed = 0
    for server in dict.fromkeys(servers):
        try:
            token = cfg.admin_token(server)
            listed = admin_client.request(server, token, {"op": "list"}).get("jobs") or []
            for job in stale_jobs(listed, lambda j: job_state(cfg, j)):
                reply = admin_client.request(server, token, {"op": "revoke", "job": job})
                _say(f"{server}: job {job} has ended: revoked {reply.get('revoked', 0)} token(s), "
                     f"ended {reply.get('sessions_ended', 0)} session(s)")
        except (admin_client.AdminRequestFailed, SiteConfigError) as e:
            _say(f"sweep: {e}")
            failed += 1
    return 1 if failed else 0


def task_env(cfg: SiteConfig, env) -> dict[str, str]:
    """The variables a licence job's task gets: where its GPUs are, its token,
    and `gpuwire run`'s loader redirection ({} for other jobs)."""
    from gpuwire.runner import build_env

    found = read_job(cfg, job_id(env))
    if found is None or not found[0].get("export"):
        return {}
    record, _ = found
    _, tok = job_files(cfg, job_id(env))
    base = dict(env)
    base["GPUWIRE_TOKEN_FILE"] = str(tok)
    full = build_env(base, server=record["server"])
    return {k: v for k, v in full.items() if env.get(k) != v}


def task_prolog(cfg: SiteConfig, env) -> int:
    try:
        exports = task_env(cfg, env)
    except (SiteConfigError, ValueError, OSError) as e:
        print(f"print gpuwire: no remote GPU for this task: {e}")
        return 0
    for name, value in exports.items():
        if "\n" not in value:
            print(f"export {name}={value}")
    return 0


def credentials(cfg: SiteConfig, env) -> int:
    """For `gpuwire run --slurm`, in a step of the job: the server and token as JSON."""
    job = job_id(env)
    found = read_job(cfg, job)
    if found is None:
        _say(f"job {job} has no gpuwire token on this node (did the prolog run? is a gpuwire server "
             f"configured here? see the slurmd log)")
        return 1
    record, token = found
    print(json.dumps({"job": job, "server": record["server"], "token": token, "gpus": record.get("gpus")}))
    return 0


def admin_token(tokens_file: str | None, name: str) -> int:
    from gpuwire import auth

    path = Path(tokens_file).expanduser() if tokens_file else auth.default_state_dir() / auth.TOKENS_FILE
    token, entry = TokenStore(path).create(name, role=ROLE_ADMIN)
    print(token)
    _say(f"created admin token {entry.id} in {path}: put it (mode 600, root only) in the file slurm.toml's "
         f"admin_token_file names, on every Slurm node")
    return 0
