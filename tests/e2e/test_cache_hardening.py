"""The content cache under attack and under a full disk (issue 18, findings 5-7;
docs/cache.md): a store that fails is logged once, counted and makes room by
eviction; an entry copied under another chunk's name is a miss, never served;
with --cache-scope tenant one token's uploads are not another's hits."""

import hashlib
import json
import random
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import GPUWIRE, gpuwire_env, start_server
from gpuwire import auth, config
from gpuwire import cache as content_cache
from gpuwire.cache import TRAILER, entry_digest
from test_cache import MIB, _crc32c, entries, metric, metrics_text, upload


def blob_hash(seed: int, mib: float) -> str:
    """The SHA-256 of what cache_upload.py uploads for SEED and MIB (one chunk)."""
    return hashlib.sha256(random.Random(seed).randbytes(int(mib * MIB))).hexdigest()


def stats_line(srv, pattern: str):
    return srv.wait_for_log(r"cache stats: .*" + pattern, timeout=20)


# --- finding 5: a full disk before the cap --------------------------------------


@pytest.fixture
def tiny_disk(tmp_path):
    """tmp_path/cache on a 5 MiB tmpfs (room for four 1 MiB entries)."""
    d = tmp_path / "cache"
    d.mkdir()
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=5m", "none", str(d)], capture_output=True,
                           text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"cannot mount a tmpfs to fill (needs root in a mount namespace that allows it): {e}")
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill (needs root in a mount namespace that allows it): "
                    f"{r.stderr.strip()}")
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], capture_output=True, timeout=30)


def test_full_disk_is_logged_counted_and_evicted(tiny_disk, tmp_path):
    # a cap far above what the disk holds: only the disk can say no
    srv = start_server(tmp_path / "server.log", extra_args=("--metrics", "127.0.0.1:0", "--cache-max-bytes", "1G"))
    try:
        res, st = upload(srv, tmp_path, "fill", 100, 1, "--copies", 12)  # 12 MiB into 5 MiB
        # eight asked about and missed, then a cold run: plain, stored by the worker all the same
        assert st["cache"]["misses"] == 8 and st["cache"]["cold_plain_bytes"] == 4 * 1024 * 1024, st["cache"]
        stats_line(srv, r"store_failed=[1-9]")
        stats_line(srv, r"evicted=[1-9]")
        said = [ln for ln in srv.log_lines() if "cannot store" in ln]
        assert said and "No space left on device" in said[0], said
        assert len(said) == 1, f"a full disk is logged once per cause, not per store: {said}"
        # eviction made room: the latest uploads are in the cache and hit
        names = {p.name for p in entries(tiny_disk)}
        assert blob_hash(111, 1) in names and blob_hash(110, 1) in names, names
        _, again = upload(srv, tmp_path, "again", 111, 1)
        assert again["cache"]["hits"] == 1 and again["cache"]["misses"] == 0, again["cache"]
        deadline = time.monotonic() + 10
        while metric(metrics_text(srv), "gpuwire_cache_store_failed_total") < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert metric(metrics_text(srv), "gpuwire_cache_store_failed_total") >= 1
        assert not [p for p in (tiny_disk / "tmp").iterdir()]  # failed writes leave no temporary file
    finally:
        srv.stop()


# --- finding 6: an entry under another name --------------------------------------


@pytest.fixture
def cache_server(tmp_path):
    srv = start_server(tmp_path / "server.log")
    srv.cache = tmp_path / "cache"
    yield srv
    srv.stop()


def _plant(cache: Path, src: Path, digest: str) -> Path:
    dst = cache / "objects" / digest[:2] / digest
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dst)
    return dst


def test_entry_copied_under_another_hash_is_a_miss(cache_server, tmp_path):
    cache = cache_server.cache
    upload(cache_server, tmp_path, "a", 61, 1)
    (a,) = entries(cache)
    hb = blob_hash(62, 1)  # same length, other bytes
    b = _plant(cache, a, hb)
    # the folder tools see it too: ls flags it, prune --verify removes it
    listed = {e["sha256"]: e for e in json.loads(_gw("cache", "ls", "--cache-dir", str(cache), "--json").stdout)}
    assert listed[hb]["name_ok"] is False and listed[a.name]["name_ok"] is True, listed
    res, st = upload(cache_server, tmp_path, "b", 62, 1)  # upload() checks the GPU got 62's bytes
    assert st["cache"]["misses"] == 1 and st["cache"]["hits"] == 0, st["cache"]
    assert st["bytes_to_server"] >= MIB
    cache_server.wait_for_log(rf"cache entry \S+{hb} is corrupt .*names another")
    assert entry_digest(b) == hb  # stored again under its own name, right bytes


def test_prune_verify_removes_a_misnamed_entry(tmp_path):
    cache = tmp_path / "c"
    data = b"x" * 1000
    good = hashlib.sha256(data).hexdigest()
    e = cache / "objects" / good[:2] / good
    e.parent.mkdir(parents=True)
    e.write_bytes(data + _trailer(data))
    assert entry_digest(e) == good and content_cache.check_name(e) is True
    other = hashlib.sha256(b"y").hexdigest()
    _plant(cache, e, other)
    assert content_cache.prune(cache, verify=True) == {"removed": 1, "removed_bytes": 1000 + TRAILER, "corrupt": 1}
    assert [p.name for p in entries(cache)] == [good]


def _crcs(data: bytes) -> bytes:
    q = len(data) // 4 // 8 * 8
    quarters = [data[k * q:(k + 1) * q] for k in range(3)] + [data[3 * q:]]
    return b"".join(_crc32c(x).to_bytes(4, "little") for x in quarters)


def _trailer(data: bytes) -> bytes:
    return b"gwcas02\0" + len(data).to_bytes(8, "little") + _crcs(data) + hashlib.sha256(data).digest()


def _to_v1(p: Path) -> None:
    """Rewrite an entry in the format before the hash joined the trailer ("gwcas01", 32 bytes)."""
    data = p.read_bytes()[:-TRAILER]
    p.write_bytes(data + b"gwcas01\0" + len(data).to_bytes(8, "little") + _crcs(data))


def test_old_format_entries_are_sha_checked_and_rewritten(cache_server, tmp_path):
    """An entry from before the hash joined the trailer is still a hit, checked with
    SHA-256 and rewritten in the new format; one copied under another name is a miss."""
    cache = cache_server.cache
    upload(cache_server, tmp_path, "a", 71, 1)
    (a,) = entries(cache)
    _to_v1(a)
    b = _plant(cache, a, blob_hash(72, 1))
    _, st = upload(cache_server, tmp_path, "a2", 71, 1)
    assert st["cache"]["hits"] == 1, st["cache"]
    assert a.read_bytes()[-TRAILER:-TRAILER + 8] == b"gwcas02\0"  # upgraded on that read
    assert content_cache.check_name(a) is True
    _, st = upload(cache_server, tmp_path, "b", 72, 1)
    assert st["cache"]["misses"] == 1 and st["cache"]["hits"] == 0, st["cache"]
    assert entry_digest(b) == b.name


# --- finding 7: who may learn what is cached ---------------------------------------


def _gw(*args, env=None):
    return subprocess.run(GPUWIRE + list(args), capture_output=True, text=True, timeout=60, env=gpuwire_env(env))


@pytest.mark.parametrize("scope", ["tenant", "shared"])
def test_cache_scope(tmp_path, scope):
    tf = tmp_path / "tokens.json"
    store = auth.TokenStore(tf)
    ta, ea = store.create("a")
    tb, eb = store.create("b")
    srv = start_server(tmp_path / "server.log",
                       extra_args=("--tokens-file", str(tf), "--require-auth", "--cache-scope", scope))
    try:
        upload(srv, tmp_path, "a", 81, 2, env={"GPUWIRE_TOKEN": ta})
        _, b = upload(srv, tmp_path, "b", 81, 2, env={"GPUWIRE_TOKEN": tb})
        if scope == "shared":  # one cache for all: B learns (and gains) from A's upload
            assert b["cache"]["hits"] == 1 and b["cache"]["misses"] == 0, b["cache"]
            return
        assert b["cache"]["misses"] == 1 and b["cache"]["hits"] == 0, b["cache"]
        assert b["bytes_to_server"] >= 2 * MIB  # B had to send its bytes
        _, a2 = upload(srv, tmp_path, "a2", 81, 2, env={"GPUWIRE_TOKEN": ta})
        assert a2["cache"]["hits"] == 1, a2["cache"]  # A's own scope still serves A
        h = blob_hash(81, 2)
        assert (tmp_path / "cache" / "tenants" / ea.id / "objects" / h[:2] / h).is_file()
        assert not (tmp_path / "cache" / "objects" / h[:2] / h).exists()
        # the folder tools see every scope
        ls = json.loads(_gw("cache", "ls", "--cache-dir", str(tmp_path / "cache"), "--json").stdout)
        assert sorted(e["scope"] for e in ls) == sorted([ea.id, eb.id]), ls
    finally:
        srv.stop()


def test_cache_scope_setting(tmp_path):
    cfg = tmp_path / "server.toml"
    cfg.write_text('[server]\ncache_scope = "tenant"\n')
    assert config.load(cfg)["cache_scope"] == "tenant"
    assert config.resolve({}, None)["cache_scope"] == "shared"
    cfg.write_text('[server]\ncache_scope = "everyone"\n')
    with pytest.raises(config.ConfigError, match="cache_scope"):
        config.load(cfg)
    # a token id becomes a folder name only as itself when that is safe
    assert content_cache.scope_dir("0123456789abcdef") == "0123456789abcdef"
    odd = content_cache.scope_dir("../x")
    assert "/" not in odd and "." not in odd and odd
    assert content_cache.scope_dir(None) == ""
