"""Eager flushes (native/client/wire/batch.c): after a synchronize returned,
the GPU has nothing of the client's to run, so posted work that follows
leaves within GPUWIRE_EAGER_FLUSH_US (20 us), not the batch's usual
GPUWIRE_FLUSH_US, and reaches the GPU while the application still prepares
the rest (llama.cpp's next token). Seen from the worker's timeline: when the
memset posted after a synchronize was read, against when the host's pause
after it ended."""

import sys
from pathlib import Path

from conftest import explain, gw_run, start_server

SCRIPT = str(Path(__file__).resolve().parents[1] / "support" / "eager_flush.py")
PAUSE = 0.4


def _memset_read_after_sync(tmp_path, env):
    tl = tmp_path / "tl"
    tl.mkdir()
    srv = start_server(tmp_path / "server.log", env={"GPUWIRE_WORKER_TIMELINE": str(tl)})
    try:
        r = gw_run([sys.executable, SCRIPT, str(PAUSE)], server=srv.address, env=env, timeout=60)
        assert r.returncode == 0, explain(r, srv)
    finally:
        srv.stop()
    (f,) = tl.glob("timeline-*.txt")
    text = f.read_text()
    ev = [ln.split() for ln in text.splitlines() if not ln.startswith("#")]
    read = min(int(e[0]) for e in ev if e[1] == "R" and e[2] == "cuMemsetD8_v2")
    # the synchronize's end (its reply's W is stamped once written, which may be after the client answered)
    replies = [int(e[0]) for e in ev if e[1] == "E" and e[2] == "cuCtxSynchronize" and int(e[0]) < read]
    assert replies, text
    return (read - max(replies)) / 1e9


def test_work_after_a_synchronize_leaves_at_once(tmp_path):
    # a batch interval longer than the pause: only the eager flush can send the memset before it ends
    lag = _memset_read_after_sync(tmp_path, {"GPUWIRE_FLUSH_US": "1000000"})
    assert lag < PAUSE / 2, lag


def test_without_eager_flushes_the_batch_waits(tmp_path):
    lag = _memset_read_after_sync(tmp_path, {"GPUWIRE_FLUSH_US": "1000000", "GPUWIRE_EAGER_FLUSH_US": "0"})
    assert lag >= PAUSE * 0.9, lag
