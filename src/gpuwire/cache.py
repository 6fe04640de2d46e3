"""The server's content cache on disk (docs/cache.md): where it is, what is in
it, `gpuwire cache ls|stats|prune`, and the per-session figures workers report.

Layout (written by the native worker's store; the trailer is declared in
codegen/protocol.txt):
DIR/objects/ab/<64 hex digits of SHA-256> holds the bytes with that hash and
a 64-byte trailer (b"gwcas02\0", their length as u64 LE, four CRC-32C values
and the SHA-256 again, all of which the worker checks on every read); older
entries have a 32-byte trailer without the hash (b"gwcas01\0") or none.
DIR/tmp holds entries being written; DIR/lock is flock'd while entries are
evicted. With --cache-scope tenant, DIR/tenants/<token id>/ holds a tenant's
objects/ and tmp/ the same way; the lock and the cap are the whole folder's.
An entry's mtime is its last use. Sizes reported here are bytes on disk.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from gpuwire import wire_generated as wire

DEFAULT_MAX_BYTES = 64 << 30
OFF = ("off", "none", "")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
STAT_FIELDS = ("hits", "misses", "hit_bytes", "miss_bytes", "stored", "stored_bytes", "corrupt", "evicted",
               "evicted_bytes", "store_failed")
SCOPES = ("shared", "tenant")   # --cache-scope
SCOPE_ENV = "GPUWIRE_CACHE_SCOPE"  # the worker's scope folder under DIR/tenants ("": shared)
_SCOPE_NAME = re.compile(r"^[0-9A-Za-z_-]{1,64}$")


def default_dir(env: dict[str, str] | None = None) -> Path:
    """$GPUWIRE_CACHE_DIR, else /var/cache/gpuwire for root, else
    $XDG_CACHE_HOME/gpuwire/server (~/.cache/gpuwire/server)."""
    env = os.environ if env is None else env
    if env.get("GPUWIRE_CACHE_DIR"):
        return Path(env["GPUWIRE_CACHE_DIR"]).expanduser()
    if os.geteuid() == 0:
        return Path("/var/cache/gpuwire")
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gpuwire" / "server"


def resolve_dir(setting: str | None) -> Path | None:
    """The cache folder for a `cache_dir` setting: None = default, "off" = no cache."""
    if setting is None:
        return default_dir()
    if setting.strip().lower() in OFF:
        return None
    return Path(setting).expanduser()


def scope_dir(token_id: str | None) -> str:
    """The folder under DIR/tenants for a session authenticated with token_id
    (tenant scope); "" for a session without a token, which uses the shared
    scope. Token ids are hex; anything else is hashed rather than trusted as a path."""
    if not token_id:
        return ""
    if _SCOPE_NAME.match(token_id):
        return token_id
    return "h" + hashlib.sha256(token_id.encode("utf-8", "replace")).hexdigest()[:32]


def parse_max_bytes(value: object) -> int:
    """64G, 512M, 1024, or an int (0: no cap)."""
    from gpuwire.leases import parse_size

    if isinstance(value, int) and not isinstance(value, bool):
        n = value
    else:
        text = str(value).strip()
        n = 0 if text == "0" else parse_size(text)
    if n < 0:
        raise ValueError(f"cache size {value!r} is negative")
    return n


@dataclass
class Entry:
    digest: str
    size: int
    mtime: float
    path: Path
    scope: str | None = None  # a tenant's token id (folder name); None: the shared scope


def _scopes(root: Path) -> list[tuple[str | None, Path]]:
    out: list[tuple[str | None, Path]] = [(None, root / "objects")]
    try:
        for d in sorted(os.scandir(root / "tenants"), key=lambda d: d.name):
            if _SCOPE_NAME.match(d.name) and d.is_dir(follow_symlinks=False):
                out.append((d.name, Path(d.path) / "objects"))
    except OSError:
        pass
    return out


def entries(root: Path) -> list[Entry]:
    """Every entry of every scope, least recently used first."""
    out = []
    for scope, objects in _scopes(root):
        out += _entries_in(objects, scope)
    out.sort(key=lambda x: x.mtime)
    return out


def _entries_in(objects: Path, scope: str | None) -> list[Entry]:
    out = []
    try:
        subs = list(os.scandir(objects))
    except OSError:
        return []
    for sub in subs:
        if len(sub.name) != 2 or not sub.is_dir(follow_symlinks=False):
            continue
        try:
            for e in os.scandir(sub.path):
                if not _HEX64.match(e.name) or not e.is_file(follow_symlinks=False):
                    continue
                try:
                    st = e.stat(follow_symlinks=False)
                except OSError:
                    continue
                out.append(Entry(e.name, st.st_size, st.st_mtime, Path(e.path), scope))
        except OSError:
            continue
    return out


def disk_stats(root: Path) -> dict:
    es = entries(root)
    return {"dir": str(root), "entries": len(es), "bytes": sum(e.size for e in es),
            "oldest": es[0].mtime if es else None, "newest": es[-1].mtime if es else None}


class _Locked:
    """The eviction lock the workers take (flock on DIR/lock)."""

    def __init__(self, root: Path):
        self.path = root / "lock"

    def __enter__(self):
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


# the trailer's layout: codegen/protocol.txt ("trailer"), shared with the worker's store
TRAILER_MAGIC = wire.CAS_TRAILER_V2_MAGIC
TRAILER = wire.CAS_TRAILER_V2_SIZE        # magic, length, 4 CRC-32C, SHA-256 (the entry's name)
TRAILER_MAGIC_V1 = wire.CAS_TRAILER_V1_MAGIC
TRAILER_V1 = wire.CAS_TRAILER_V1_SIZE     # the same without the hash (older entries)


def read_trailer(path: Path) -> tuple[str, int, str | None]:
    """(format, length of the bytes, hash the trailer names): "v2" (current),
    "v1" (no hash in it) or "raw" (no trailer: the whole file is the bytes)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        if size >= TRAILER:
            f.seek(size - TRAILER)
            t = f.read(TRAILER)
            if t[:8] == TRAILER_MAGIC and int.from_bytes(t[8:16], "little") == size - TRAILER:
                return "v2", size - TRAILER, t[32:].hex()
        if size >= TRAILER_V1:
            f.seek(size - TRAILER_V1)
            t = f.read(TRAILER_V1)
            if t[:8] == TRAILER_MAGIC_V1 and int.from_bytes(t[8:16], "little") == size - TRAILER_V1:
                return "v1", size - TRAILER_V1, None
    return "raw", size, None


def check_name(path: Path) -> bool | None:
    """Whether the entry's trailer names the hash its file is named by (cheap:
    the trailer alone; a copied or renamed entry fails); None for an older
    entry, whose trailer has no hash (only entry_digest can tell)."""
    _, _, named = read_trailer(path)
    return None if named is None else named == path.name


def entry_digest(path: Path) -> str:
    """SHA-256 of an entry's bytes (its trailer, when it has a well-formed
    one, left out; the CRCs in it are the worker's to check)."""
    _, n, _ = read_trailer(path)
    with open(path, "rb") as f:
        h = hashlib.sha256()
        while n > 0:
            block = f.read(min(n, 1 << 20))
            if not block:
                break
            h.update(block)
            n -= len(block)
    return h.hexdigest()


def prune(root: Path, max_bytes: int | None = None, older_than_s: float | None = None,
          verify: bool = False, everything: bool = False) -> dict:
    """Remove entries: all, those unused for older_than_s, the least recently
    used beyond max_bytes, and with verify those whose content does not match
    their name (re-hashed, and named by their trailer). Returns what was removed."""
    removed = removed_bytes = corrupt = 0
    if not (root / "objects").is_dir():
        return {"removed": 0, "removed_bytes": 0, "corrupt": 0}
    with _Locked(root):
        es = entries(root)
        keep = []
        now = time.time()
        for e in es:
            bad = False
            if verify and not everything:
                try:
                    bad = check_name(e.path) is False or entry_digest(e.path) != e.digest
                except OSError:
                    bad = True
            if everything or bad or (older_than_s is not None and now - e.mtime > older_than_s):
                try:
                    e.path.unlink()
                    removed += 1
                    removed_bytes += e.size
                    corrupt += bad
                except OSError:
                    pass
            else:
                keep.append(e)
        if max_bytes is not None:
            total = sum(e.size for e in keep)
            for e in keep:
                if total <= max_bytes:
                    break
                try:
                    e.path.unlink()
                    removed += 1
                    removed_bytes += e.size
                    total -= e.size
                except OSError:
                    pass
    return {"removed": removed, "removed_bytes": removed_bytes, "corrupt": corrupt}


def session_figures(work: dict | None) -> dict[str, int]:
    """A worker's content-store counters from its session-stats block
    (session_stats.Block.read(): fields cas_<name>); {} while the worker has used no cache."""
    figures = {k: work.get(f"cas_{k}", 0) for k in STAT_FIELDS} if work else {}
    return figures if any(figures.values()) else {}


class DiskFigures:
    """The folder's size for /metrics, re-read at most every `every` seconds
    (a scan of a large cache is not free)."""

    def __init__(self, root: Path | None, every: float = 10.0):
        self.root, self.every = root, every
        self._at, self._value = 0.0, None
        self._lock = threading.Lock()

    def get(self) -> dict | None:
        if self.root is None:
            return None
        with self._lock:
            if self._value is None or time.monotonic() - self._at > self.every:
                self._value = disk_stats(self.root)
                self._at = time.monotonic()
            return dict(self._value)


# --- `gpuwire cache` ------------------------------------------------------------


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def cli(args) -> int:
    import json
    import sys

    from gpuwire import config

    if not getattr(args, "cache_command", None):
        print("gpuwire cache: ACTION is ls, stats or prune (see gpuwire cache --help)", file=sys.stderr)
        return 2
    setting = args.cache_dir
    max_setting = None
    if args.config:
        try:
            cfg = config.load(args.config)
        except config.ConfigError as e:
            print(f"gpuwire cache: {e}", file=sys.stderr)
            return 2
        setting = setting or cfg.get("cache_dir")
        max_setting = cfg.get("cache_max_bytes")
    root = resolve_dir(setting)
    if root is None:
        print("gpuwire cache: the cache is off (cache_dir = \"off\")", file=sys.stderr)
        return 1
    what = args.cache_command
    if what == "ls":
        es = entries(root)
        rows = []
        for e in es:
            try:
                fmt, _, named = read_trailer(e.path)
            except OSError:
                continue  # evicted meanwhile
            rows.append((e, fmt, None if named is None else named == e.digest))
        if args.json:
            print(json.dumps([{"sha256": e.digest, "bytes": e.size, "last_used": e.mtime, "scope": e.scope,
                               "format": fmt, "name_ok": ok} for e, fmt, ok in rows]))
            return 0
        for e, fmt, ok in reversed(rows):  # most recently used first
            note = ("  MISNAMED (its trailer names another hash; prune --verify removes it)" if ok is False
                    else f"  older format ({fmt})" if ok is None else "")
            scope = f"  tenant {e.scope}" if e.scope else ""
            print(f"{e.digest}  {e.size:>10}  {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(e.mtime))}"
                  f"{scope}{note}")
        return 0
    if what == "stats":
        st = disk_stats(root)
        cap = parse_max_bytes(max_setting) if max_setting is not None else DEFAULT_MAX_BYTES
        st["max_bytes"] = cap
        if args.json:
            print(json.dumps(st))
            return 0
        print(f"cache {st['dir']}: {st['entries']} entries, {_size(st['bytes'])}"
              + (f" of {_size(cap)} ({100 * st['bytes'] / cap:.0f}%)" if cap else " (no cap)"))
        if st["entries"]:
            print(f"  last used {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(st['newest']))}, "
                  f"least recently {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(st['oldest']))}")
        return 0
    if what == "prune":
        try:
            max_bytes = parse_max_bytes(args.max_bytes) if args.max_bytes is not None else None
        except ValueError as e:
            print(f"gpuwire cache prune: {e}", file=sys.stderr)
            return 2
        older = args.older_than_days * 86400.0 if args.older_than_days is not None else None
        if max_bytes is None and older is None and not args.verify and not args.all:
            print("gpuwire cache prune: say what to remove: --all, --max-bytes SIZE, --older-than-days N "
                  "or --verify", file=sys.stderr)
            return 2
        res = prune(root, max_bytes=max_bytes, older_than_s=older, verify=args.verify, everything=args.all)
        if args.json:
            print(json.dumps(res))
        else:
            print(f"removed {res['removed']} entries ({_size(res['removed_bytes'])})"
                  + (f", {res['corrupt']} of them corrupt" if args.verify else ""))
        return 0
    print("gpuwire cache: ACTION is ls, stats or prune", file=sys.stderr)
    return 2
