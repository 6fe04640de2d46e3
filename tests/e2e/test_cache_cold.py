"""Cold uploads through the content cache (docs/cache.md, "The worker: the
background writer"): the chunks a client sends reach the device at once and
are stored by the worker's writer threads afterwards. The GPU gets the right
bytes, and once the writers drain every chunk is in the cache, whole and named
by its own SHA-256; with the writers' queue full, chunks are skipped rather
than waited for, and what is stored is still whole."""

import hashlib
import json
import random
import re
import sys
import time
from pathlib import Path

import pytest

from conftest import explain, gw_run, start_server
from gpuwire.cache import entry_digest

UPLOAD = str(Path(__file__).resolve().parents[1] / "support" / "cache_upload.py")
MIB = 1 << 20
CHUNK = 4 * MIB


def entries(cache: Path) -> list[Path]:
    return sorted(p for p in (cache / "objects").glob("*/*") if p.is_file())


def upload(srv, tmp_path, name, *args) -> dict:
    stats = tmp_path / f"{name}.json"
    r = gw_run([sys.executable, UPLOAD, *map(str, args)], server=srv.address, stats=stats,
               env={"XDG_CACHE_HOME": str(tmp_path / "client-cache")}, timeout=120)
    assert r.returncode == 0, explain(r, srv)
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    assert '"ok": true' in line, line  # cache_upload.py read the bytes back from the GPU and compared them
    return json.loads(stats.read_text())


def poll(what: str, check, timeout: float = 30.0):
    """check() until it returns something true, or fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s")
        time.sleep(0.05)


def chunk_hashes(seed: int, mib: int) -> set[str]:
    """The SHA-256 of each 4 MiB chunk of what cache_upload.py uploads for seed."""
    data = random.Random(seed).randbytes(mib * MIB)
    return {hashlib.sha256(data[o:o + CHUNK]).hexdigest() for o in range(0, len(data), CHUNK)}


def accounted(srv, misses: int):
    """(stored, skipped) from the first worker "cache stats:" line in which each
    of `misses` chunks was stored or skipped (the writers are done), else None."""
    for line in srv.log_lines():
        m = re.search(r"cache stats: .*misses=(\d+) .*stored=(\d+) .*store_skipped=(\d+)", line)
        if m and int(m.group(1)) == misses and int(m.group(2)) + int(m.group(3)) == misses:
            return int(m.group(2)), int(m.group(3))
    return None


@pytest.fixture
def server(tmp_path, request):
    env = getattr(request, "param", None) or {}
    srv = start_server(tmp_path / "server.log", env=env)
    srv.cache = tmp_path / "cache"
    yield srv
    srv.stop()


def test_cold_upload_is_right_and_stored_after_the_writers_drain(server, tmp_path):
    mib = 26  # 7 chunks, the last one short
    want = chunk_hashes(21, mib)
    cold = upload(server, tmp_path, "cold", 21, mib)
    assert cold["cache"]["misses"] == 7 and cold["cache"]["hits"] == 0, cold["cache"]
    # the writers store in the background: poll for the entries, then check each
    poll("the 7 entries in the cache", lambda: {p.name for p in entries(server.cache)} == want)
    for p in entries(server.cache):
        assert entry_digest(p) == p.name  # the trailer's hash is the name, and the bytes hash to it
        assert hashlib.sha256(p.read_bytes()[:-64]).hexdigest() == p.name
    assert not list((server.cache / "tmp").iterdir()), "a writer left a temporary file"
    assert poll("the session's stats: 7 misses, all stored", lambda: accounted(server, 7)) == (7, 0)
    warm = upload(server, tmp_path, "warm", 21, mib)
    assert warm["cache"]["hits"] == 7 and warm["cache"]["misses"] == 0, warm["cache"]


@pytest.mark.parametrize("server", [{"GPUWIRE_CACHE_WRITE_QUEUE": "1", "GPUWIRE_CACHE_WRITERS": "1"}],
                         indirect=True)
def test_a_full_writer_queue_skips_chunks_and_never_stores_part_of_one(server, tmp_path):
    mib = 40  # 10 chunks through a queue of one
    want = chunk_hashes(22, mib)
    cold = upload(server, tmp_path, "cold", 22, mib)
    assert cold["cache"]["misses"] == 10, cold["cache"]

    stored, skipped = poll("every chunk stored or skipped", lambda: accounted(server, 10))
    names = {p.name for p in entries(server.cache)}
    assert len(names) == stored and names <= want, (names, stored, skipped)
    for p in entries(server.cache):
        assert hashlib.sha256(p.read_bytes()[:-64]).hexdigest() == p.name == entry_digest(p)
    assert not list((server.cache / "tmp").iterdir()), "a writer left a temporary file"
    if skipped:
        server.wait_for_log(r"background writer is 1 chunks behind")
    # the next upload fetches what was skipped, and the GPU again gets the right bytes
    again = upload(server, tmp_path, "again", 22, mib)
    assert again["cache"]["hits"] == stored and again["cache"]["misses"] == 10 - stored, again["cache"]
