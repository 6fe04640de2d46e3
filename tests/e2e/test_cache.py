"""Content-addressed transfers against the stand-in (docs/cache.md): repeated
uploads hit the server's cache, a corrupt entry is detected and fetched again,
the cache stays under its cap, concurrent clients uploading the same bytes all
get them right, file-backed sources are hashed once, module images travel the
same way, and `gpuwire cache` shows and prunes the folder."""

import hashlib
import json
import os
import re
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import GPUWIRE, ROOT, explain, gpuwire_env, gw_run, start_server
from gpuwire.cache import TRAILER, entry_digest

UPLOAD = str(Path(__file__).resolve().parents[1] / "support" / "cache_upload.py")
MIB = 1 << 20
CHUNK = 4 * MIB


@pytest.fixture
def cache_server(tmp_path):
    """A stand-in server with a cache folder of its own: tmp_path/cache."""
    srv = start_server(tmp_path / "server.log", extra_args=("--metrics", "127.0.0.1:0"))
    srv.cache = tmp_path / "cache"
    yield srv
    srv.stop()


def upload(srv, tmp_path, name, *args, env=None):
    """One client process uploading (cache_upload.py); returns (result, stats)."""
    stats = tmp_path / f"{name}.json"
    env = dict(env or {})
    env.setdefault("XDG_CACHE_HOME", str(tmp_path / "client-cache"))
    r = gw_run([sys.executable, UPLOAD, *map(str, args)], server=srv.address, stats=stats, env=env, timeout=120)
    assert r.returncode == 0, explain(r, srv)
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    res = json.loads(line[len("RESULT "):])
    assert res["ok"], res
    sessions_ended(srv)
    return res, json.loads(stats.read_text())


def sessions_ended(srv, timeout: float = 30.0) -> None:
    """Waits until every session the server started has ended: a worker's
    background writer finishes storing its chunks as the session ends, which
    may be just after the client exited (docs/cache.md), and the tests count
    and read the entries."""
    deadline = time.monotonic() + timeout
    while True:
        text = srv.log_text()
        if text.count('msg="session start"') == text.count('msg="session end"') or time.monotonic() > deadline:
            return
        time.sleep(0.05)


def entries(cache: Path) -> list[Path]:
    return sorted(p for p in (cache / "objects").glob("*/*") if p.is_file())


def metrics_text(srv) -> str:
    m = srv.wait_for_log(r"admin endpoint on http://(\S+)/metrics")
    with urllib.request.urlopen(f"http://{m.group(1)}/metrics", timeout=10) as f:
        return f.read().decode()


def metric(text: str, name: str) -> float:
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    assert m, f"{name} not in /metrics:\n{text}"
    return float(m.group(1))


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_repeated_upload_hits(cache_server, tmp_path, mode):
    n = 18 * MIB  # 5 chunks, the last one short
    extra = ["--async"] if mode == "async" else []
    _, cold = upload(cache_server, tmp_path, "cold", 11, 18, *extra)
    assert cold["cache"]["enabled"] and cold["cache"]["misses"] == 5 and cold["cache"]["hits"] == 0, cold["cache"]
    assert cold["bytes_to_server"] >= n
    assert len(entries(cache_server.cache)) == 5
    _, warm = upload(cache_server, tmp_path, "warm", 11, 18, *extra)
    assert warm["cache"]["hits"] == 5 and warm["cache"]["misses"] == 0, warm["cache"]
    assert warm["cache"]["bytes_avoided"] == n
    assert warm["bytes_to_server"] < n / 100, f"a warm upload sent {warm['bytes_to_server']} bytes"
    assert warm["round_trips_by_function"].get("(cache references)") == 1  # one per copy call, not per chunk
    # the server's metrics saw both sessions
    deadline = time.monotonic() + 10
    while True:
        text = metrics_text(cache_server)
        if metric(text, "gpuwire_cache_bytes_avoided_total") >= n or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert metric(text, "gpuwire_cache_bytes_avoided_total") == n
    assert metric(text, "gpuwire_cache_hits_total") == 5 and metric(text, "gpuwire_cache_misses_total") == 5
    assert metric(text, "gpuwire_cache_entries") == 5


def test_portable_and_sha_ni_hashes_agree(cache_server, tmp_path):
    """The client hashing in portable C and the worker with SHA-NI (where the CPU
    has it) name chunks alike: the second upload hits."""
    upload(cache_server, tmp_path, "ni", 13, 9)
    _, c = upload(cache_server, tmp_path, "portable", 13, 9, env={"GPUWIRE_SHA256": "portable"})
    assert c["cache"]["hits"] == 3 and c["cache"]["misses"] == 0, c["cache"]
    for p in entries(cache_server.cache):
        assert entry_digest(p) == p.name


def _crc32c_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


CRC32C_TABLE = _crc32c_table()


def _crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), bytewise: slow, but independent of the worker's."""
    c = 0xFFFFFFFF
    for b in data:
        c = CRC32C_TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def test_entry_trailer_is_as_documented(cache_server, tmp_path):
    """docs/cache.md: the bytes, then b"gwcas02\\0", their length (u64 LE), the
    CRC-32C of each quarter (u32 LE each; quarters of len/4 rounded down to 8
    bytes, the last running to the end) and their SHA-256, the entry's name."""
    assert _crc32c(b"123456789") == 0xE3069283  # the standard check value
    upload(cache_server, tmp_path, "fmt", 41, 5)  # one whole 4 MiB chunk and a short one
    for p in entries(cache_server.cache):
        raw = p.read_bytes()
        data, t = raw[:-TRAILER], raw[-TRAILER:]
        assert t[:8] == b"gwcas02\0" and int.from_bytes(t[8:16], "little") == len(data)
        q = len(data) // 4 // 8 * 8
        quarters = [data[k * q:(k + 1) * q] for k in range(3)] + [data[3 * q:]]
        assert [int.from_bytes(t[16 + 4 * k:20 + 4 * k], "little") for k in range(4)] == \
            [_crc32c(x) for x in quarters], p.name
        assert hashlib.sha256(data).hexdigest() == p.name == t[32:].hex()


def test_entries_without_trailer_still_serve_and_are_verified(cache_server, tmp_path):
    """Entries written before the CRC trailer existed hold the bytes alone:
    still hits, checked with SHA-256 instead, a damaged one still refetched."""
    upload(cache_server, tmp_path, "cold", 31, 16)
    es = entries(cache_server.cache)
    assert len(es) == 4
    for p in es:
        raw = p.read_bytes()
        assert raw[-TRAILER:-TRAILER + 8] == b"gwcas02\0" and len(raw) == CHUNK + TRAILER
        p.write_bytes(raw[:-TRAILER])
    data = bytearray(es[0].read_bytes())
    data[777] ^= 1
    es[0].write_bytes(bytes(data))
    res, warm = upload(cache_server, tmp_path, "warm", 31, 16)
    assert res["ok"]
    assert warm["cache"]["hits"] == 3 and warm["cache"]["misses"] == 1, warm["cache"]
    assert entry_digest(es[0]) == es[0].name  # stored again, with its trailer
    for p in es:  # the good ones rewritten with the current trailer on that read
        assert p.read_bytes()[-TRAILER:-TRAILER + 8] == b"gwcas02\0"


def test_corrupt_and_truncated_entries_are_refetched(cache_server, tmp_path):
    upload(cache_server, tmp_path, "cold", 5, 16)
    es = entries(cache_server.cache)
    assert len(es) == 4
    flipped, cut = es[0], es[1]
    data = bytearray(flipped.read_bytes())
    data[12345] ^= 0x40
    flipped.write_bytes(bytes(data))
    cut.write_bytes(cut.read_bytes()[: CHUNK // 2])
    res, warm = upload(cache_server, tmp_path, "warm", 5, 16)
    assert res["ok"]  # the GPU got the right bytes, not the corrupt entry's
    assert warm["cache"]["misses"] == 2 and warm["cache"]["hits"] == 2, warm["cache"]
    assert warm["bytes_to_server"] >= 2 * CHUNK
    cache_server.wait_for_log(r"cache entry \S+ is corrupt or truncated")
    for p in entries(cache_server.cache):  # refetched and stored again, correct
        assert entry_digest(p) == p.name
    assert len(entries(cache_server.cache)) == 4


def test_eviction_keeps_the_cache_under_its_cap(tmp_path):
    srv = start_server(tmp_path / "server.log", extra_args=("--cache-max-bytes", "20M"))
    try:
        cache = tmp_path / "cache"
        for seed in (1, 2, 3, 4):
            upload(srv, tmp_path, f"s{seed}", seed, 12)
            assert sum(p.stat().st_size for p in entries(cache)) <= 20 * MIB + 12 * MIB
        total = sum(p.stat().st_size for p in entries(cache))
        assert total <= 20 * MIB, f"cache holds {total} bytes over its 20 MiB cap"
        srv.wait_for_log(r"cache stats: .*evicted=[1-9]")
        # the most recent upload survived (least recently used went first)
        _, again = upload(srv, tmp_path, "again", 4, 12)
        assert again["cache"]["hits"] == 3, again["cache"]
        # an evicted one is simply missing: sent again, correct
        res, old = upload(srv, tmp_path, "old", 1, 12)
        assert res["ok"] and old["cache"]["misses"] >= 1
    finally:
        srv.stop()


def test_concurrent_clients_upload_the_same_content(cache_server, tmp_path):
    def one(i):
        return upload(cache_server, tmp_path, f"c{i}", 42, 24)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, range(4)))
    assert all(res["ok"] for res, _ in results)
    assert len({res["sha256"] for res, _ in results}) == 1
    es = entries(cache_server.cache)
    assert len(es) == 6
    for p in es:
        assert entry_digest(p) == p.name
    assert not list((cache_server.cache / "tmp").iterdir())  # every temporary file was renamed or removed
    _, warm = upload(cache_server, tmp_path, "after", 42, 24)
    assert warm["cache"]["hits"] == 6


def test_file_backed_source_is_hashed_once(cache_server, tmp_path):
    model = tmp_path / "model.bin"
    model.write_bytes(os.urandom(10 * MIB))
    _, first = upload(cache_server, tmp_path, "first", 0, 0, "--file", model)
    assert first["cache"]["hashed_bytes"] == 10 * MIB and first["cache"]["memo_bytes"] == 0
    _, second = upload(cache_server, tmp_path, "second", 0, 0, "--file", model)
    assert second["cache"]["hashed_bytes"] == 0 and second["cache"]["memo_bytes"] == 10 * MIB, second["cache"]
    assert second["cache"]["hits"] == 3
    # the file changes: new identity (mtime), hashed again, the GPU gets the new bytes
    time.sleep(0.01)
    model.write_bytes(os.urandom(10 * MIB))
    res, third = upload(cache_server, tmp_path, "third", 0, 0, "--file", model)
    assert res["ok"] and third["cache"]["hashed_bytes"] == 10 * MIB and third["cache"]["misses"] == 3
    # no memo when it is off
    _, off = upload(cache_server, tmp_path, "off", 0, 0, "--file", model, env={"GPUWIRE_MEMO": "0"})
    assert off["cache"]["memo_bytes"] == 0 and off["cache"]["hits"] == 3


def _fatbin() -> Path:
    p = ROOT / "build" / "programs" / "obj" / "driver_api_kernels.fatbin"
    if not p.exists():
        pytest.skip("tests/programs not built (make -C tests/programs)")
    return p


def test_module_images_travel_by_content(cache_server, tmp_path):
    env = {"GPUWIRE_CACHE_MIN_IMAGE": "1"}  # the test fatbin is small
    _, cold = upload(cache_server, tmp_path, "cold", 3, 1, "--image", _fatbin(), env=env)
    assert cold["cache"]["image_misses"] == 1 and cold["cache"]["image_hits"] == 0, cold["cache"]
    _, warm = upload(cache_server, tmp_path, "warm", 3, 1, "--image", _fatbin(), env=env)
    assert warm["cache"]["image_hits"] == 1 and warm["cache"]["image_miss_bytes_sent"] == 0, warm["cache"]
    assert warm["cache"]["image_bytes_avoided"] == _fatbin().stat().st_size


def test_cache_off(tmp_path):
    srv = start_server(tmp_path / "server.log", extra_args=("--cache-dir", "off"))
    try:
        _, a = upload(srv, tmp_path, "a", 9, 8)
        _, b = upload(srv, tmp_path, "b", 9, 8)
        assert not b["cache"]["enabled"] and b["cache"]["hits"] == 0 and b["bytes_to_server"] >= 8 * MIB
    finally:
        srv.stop()


def test_client_can_opt_out(cache_server, tmp_path):
    upload(cache_server, tmp_path, "a", 9, 8)
    _, b = upload(cache_server, tmp_path, "b", 9, 8, env={"GPUWIRE_CACHE": "0"})
    assert not b["cache"]["enabled"] and b["bytes_to_server"] >= 8 * MIB


def gw(*args, env=None):
    import subprocess

    return subprocess.run(GPUWIRE + list(args), capture_output=True, text=True, timeout=60, env=gpuwire_env(env))


def test_cache_cli(cache_server, tmp_path):
    upload(cache_server, tmp_path, "a", 21, 10)
    d = str(cache_server.cache)
    r = gw("cache", "stats", "--cache-dir", d, "--json")
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert st["entries"] == 3 and st["bytes"] == 10 * MIB + 3 * TRAILER  # bytes on disk
    r = gw("cache", "stats", "--cache-dir", d)
    assert "3 entries" in r.stdout, r.stdout
    r = gw("cache", "ls", "--cache-dir", d)
    assert len(r.stdout.splitlines()) == 3 and all(re.match(r"^[0-9a-f]{64}\s", ln) for ln in r.stdout.splitlines())
    bad = entries(cache_server.cache)[0]
    bad.write_bytes(b"not what the name says")
    r = gw("cache", "prune", "--cache-dir", d, "--verify", "--json")
    assert json.loads(r.stdout) == {"removed": 1, "removed_bytes": 22, "corrupt": 1}, r.stdout
    r = gw("cache", "prune", "--cache-dir", d, "--max-bytes", "5M", "--json")
    assert json.loads(r.stdout)["removed"] == 1 and len(entries(cache_server.cache)) == 1
    r = gw("cache", "prune", "--cache-dir", d)
    assert r.returncode == 2 and "say what to remove" in r.stderr
    r = gw("cache", "prune", "--cache-dir", d, "--all")
    assert r.returncode == 0 and not entries(cache_server.cache)
    cfg = tmp_path / "server.toml"
    cfg.write_text(f'[server]\ncache_dir = "{d}"\ncache_max_bytes = 1048576\n')
    r = gw("cache", "stats", "--config", str(cfg), "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["max_bytes"] == 1 << 20, r.stdout + r.stderr


def test_a_buffer_refilled_with_new_bytes_skips_the_cache(cache_server, tmp_path):
    """Twenty 2 MiB uploads of new bytes into one allocation (a buffer refilled
    each step): the first asks the cache and finds nothing, the next fifteen
    take the plain path (no hashing, no reference round trip), the seventeenth
    asks again; every upload reads back right. Into twenty allocations of their
    own, each is asked about (model weights: a new destination each)."""
    _, same = upload(cache_server, tmp_path, "same", 40, 2, "--copies", 20, "--same-dst")
    assert same["cache"]["misses"] == 2 and same["cache"]["hits"] == 0, same["cache"]
    assert same["round_trips_by_function"].get("(cache references)") == 2, same["round_trips_by_function"]
    assert same["bytes_to_server"] >= 20 * 2 * MIB
    _, own = upload(cache_server, tmp_path, "own", 80, 2, "--copies", 20)
    # a new destination each: asked about until a run of eight missed, then plain and stored
    assert own["cache"]["misses"] == 8 and own["cache"]["cold_plain_bytes"] == 12 * 2 * MIB, own["cache"]


def test_a_buffer_refilled_after_a_cold_run_is_not_stored_again(cache_server, tmp_path):
    """After a model's first load (a cold run: plain and stored), a buffer the
    application fills again (llama.cpp's batch input, 3 MB every prompt step)
    is a refill: plain, not stored by the worker each time (and, from two
    cache chunks up, on the copy lanes like any plain copy)."""
    _, st = upload(cache_server, tmp_path, "refill", 90, 2, "--copies", 10, "--refill", 6)
    # eight asked about and missed, two in the cold run; the six refills neither ask nor store
    assert st["cache"]["misses"] == 8 and st["cache"]["cold_plain_bytes"] == 2 * 2 * MIB, st["cache"]
    assert st["bytes_to_server"] >= 16 * 2 * MIB


@pytest.fixture
def deep_queue_server(tmp_path):
    """A cache server whose background writer may hold 64 chunks: on a 2-core
    machine one writer would otherwise skip some of a fast run (as designed)."""
    srv = start_server(tmp_path / "server.log", env={"GPUWIRE_CACHE_WRITE_QUEUE": "64"})
    srv.cache = tmp_path / "cache"
    yield srv
    srv.stop()


def test_a_cold_run_goes_plain_and_is_stored_for_next_time(deep_queue_server, tmp_path):
    """Forty 1 MiB uploads of new bytes, each to its own allocation (a model's
    first load): the first eight ask the cache and miss; the rest go plain
    without a reference round trip (every 32nd of them asks again), and the
    worker stores their chunks anyway, so a second process uploading the same
    bytes finds them in the cache."""
    cache_server = deep_queue_server
    _, cold = upload(cache_server, tmp_path, "cold", 500, 1, "--copies", 40)
    rts = cold["round_trips_by_function"].get("(cache references)")
    assert rts == 9 and cold["cache"]["misses"] == 9, (rts, cold["cache"])  # 8, then the 32nd plain one's probe
    assert cold["cache"]["cold_plain_bytes"] == 31 * MIB, cold["cache"]
    deadline = time.monotonic() + 30  # the background writers store them (a 2-core machine: give them time)
    while len(entries(cache_server.cache)) < 40 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(entries(cache_server.cache)) >= 40, len(entries(cache_server.cache))
    _, warm = upload(cache_server, tmp_path, "warm", 500, 1, "--copies", 40)
    assert warm["cache"]["hits"] == 40 and warm["cache"]["misses"] == 0, warm["cache"]
    assert warm["cache"]["cold_plain_bytes"] == 0, warm["cache"]


def test_a_cold_run_of_large_copies_takes_the_lanes_and_is_stored(deep_queue_server, tmp_path):
    """A cold run's copies of two cache chunks or more go plain on the copy
    lanes (parallel connections), each piece still one cache chunk stored by
    the worker, so a second process finds every chunk."""
    srv = deep_queue_server
    _, cold = upload(srv, tmp_path, "cold-big", 700, 8, "--copies", 10)
    assert cold["cache"]["misses"] == 16 and cold["cache"]["cold_plain_bytes"] == 2 * 8 * MIB, cold["cache"]
    # on the lanes: the ten read-backs (8 MiB each) and the two plain uploads (without them: 80 MiB)
    assert cold["lane_bytes"] == 12 * 8 * MIB, (cold["lanes"], cold["lane_bytes"])
    deadline = time.monotonic() + 30
    while len(entries(srv.cache)) < 20 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(entries(srv.cache)) >= 20, len(entries(srv.cache))
    _, warm = upload(srv, tmp_path, "warm-big", 700, 8, "--copies", 10)
    assert warm["cache"]["hits"] == 20 and warm["cache"]["misses"] == 0, warm["cache"]


def test_an_upload_whose_first_chunks_alone_are_cached_completes(deep_queue_server, tmp_path):
    """A cache hit's copies go through a ring of slots handed back to the reader
    threads a quarter ring at a time; a stretch of absent chunks after a few hits
    issued no copy and so handed nothing back, and the worker waited forever for
    a chunk no reader could load (most likely StreamPriorities' hang on the H100:
    256 MiB of counting integers, whose first chunks other samples had cached,
    and a CAS_REFS that ran 31 s). 5 hits, then 29 absent chunks."""
    srv = deep_queue_server
    upload(srv, tmp_path, "prefix", 0, 20, "--counting")
    deadline = time.monotonic() + 30
    while len(entries(srv.cache)) < 5 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(entries(srv.cache)) == 5, len(entries(srv.cache))
    _, whole = upload(srv, tmp_path, "whole", 0, 136, "--counting")
    assert whole["cache"]["hits"] == 5 and whole["cache"]["misses"] == 29, whole["cache"]


def test_a_refilled_buffer_whose_bytes_the_cache_has_asks_again(cache_server, tmp_path):
    """The retry (every sixteenth upload into a buffer marked fresh) finds bytes
    the cache has: the mark goes, and the next upload asks the cache again."""
    _, prime = upload(cache_server, tmp_path, "prime", 100, 2)
    assert prime["cache"]["misses"] == 1
    # seeds 84..103 into one allocation: 84 misses (marked), 85..99 skip the
    # cache, 100 is the retry and hits (mark gone), 101 misses (marked), 102 and 103 skip
    _, again = upload(cache_server, tmp_path, "again", 84, 2, "--copies", 20, "--same-dst")
    assert again["cache"]["hits"] == 1 and again["cache"]["misses"] == 2, again["cache"]
    assert again["round_trips_by_function"].get("(cache references)") == 3, again["round_trips_by_function"]


def test_pinned_async_sources_skip_the_cache(cache_server, tmp_path):
    """Asynchronous copies from page-locked memory go plain (a refilled staging
    buffer's bytes are new each time; hashing them costs more than sending them
    on a fast link: simpleMultiCopy's first timed copy), unless
    GPUWIRE_CACHE_PINNED_SOURCES=1; pageable and synchronous ones still ask."""
    n = 4 << 20
    _, plain = upload(cache_server, tmp_path, "pinned", 31, 4, "--async", "--pinned")
    assert plain["cache"]["hits"] == 0 and plain["cache"]["misses"] == 0, plain["cache"]
    assert "(cache references)" not in plain["round_trips_by_function"], plain["round_trips_by_function"]
    assert plain["bytes_to_server"] >= n
    _, asked = upload(cache_server, tmp_path, "pinned-cached", 31, 4, "--async", "--pinned",
                      env={"GPUWIRE_CACHE_PINNED_SOURCES": "1"})
    assert asked["cache"]["misses"] >= 1, asked["cache"]
    _, pageable = upload(cache_server, tmp_path, "pageable", 32, 4, "--async")
    assert pageable["cache"]["misses"] >= 1, pageable["cache"]
