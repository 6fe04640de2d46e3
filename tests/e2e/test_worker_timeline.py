"""The worker's timeline (GPUWIRE_WORKER_TIMELINE, native/worker/core/timeline.c)
and tools/timeline-report: a decode-shaped program's waited synchronize shows
as one reply pattern per token, with the frames read, the jobs run, and the
delivery's bytes sent before the reply: by its event (P, the default), or
by its host function then the outbox (H, D; GPUWIRE_DELIVERIES=hostfn)."""

import subprocess
import sys

import pytest

from conftest import ROOT, explain, gw_run, start_server

PROGRAM = ROOT / "build" / "programs" / "sync_fences_shared"
TOKENS = 12


@pytest.mark.parametrize("mode", ["events", "hostfn"])
def test_timeline_shows_each_tokens_server_side(tmp_path, mode):
    if not PROGRAM.exists():
        pytest.skip("build/programs/sync_fences_shared is not built (run scripts/setup)")
    tl = tmp_path / "tl"
    tl.mkdir()
    env = {"GPUWIRE_WORKER_TIMELINE": str(tl)}
    if mode == "hostfn":
        env["GPUWIRE_DELIVERIES"] = "hostfn"
    srv = start_server(tmp_path / "server.log", env=env)
    try:
        r = gw_run([str(PROGRAM), "decode", str(TOKENS)], server=srv.address, timeout=120)
        assert r.returncode == 0, explain(r, srv)
    finally:
        srv.stop()
    files = list(tl.glob("timeline-*.txt"))
    assert len(files) == 1, (files, (tmp_path / "server.log").read_text())
    lines = [ln.split() for ln in files[0].read_text().splitlines() if not ln.startswith("#")]
    kinds = {ln[1] for ln in lines}
    sent = ["P"] if mode == "events" else ["H", "D"]  # the delivery's marks, in order
    assert {"R", "S", "E", "W", *sent} <= kinds, kinds
    # every job that started ended, and each reply follows its job's end
    assert sum(ln[1] == "S" for ln in lines) == sum(ln[1] == "E" for ln in lines)
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "timeline-report"), str(files[0]), "--skip", "3",
                          "--patterns", "50"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    # each token is one waited synchronize after start-up: its windows, in one
    # pattern or several (eager flushes may split a token's frames into two
    # reads, so the interleaving of reads and jobs varies from token to token)
    sections = [b for b in out.stdout.split("\n\n") if b.startswith("== reply to cuStreamSynchronize:")]
    assert sections, out.stdout
    windows = [int(b.split(":")[1].split()[0]) for b in sections]
    assert TOKENS - 4 <= sum(windows) <= TOKENS + 1, out.stdout  # + the program's set-up synchronize
    # the kernel launch ran, then the delivery's bytes (after its host
    # function, with host functions), the reply. Under load every token may get a pattern of its own, so the set-up
    # synchronizes can tie with them on window count: judge every pattern that
    # launched, and require that such patterns hold most of the tokens.
    token_windows = 0
    for block, count in zip(sections, windows):
        body = block.splitlines()
        events = [ln.split(None, 3)[3] for ln in body[2:]]
        offsets = [float(ln.split()[0]) for ln in body[2:]]
        assert offsets == sorted(offsets), block
        assert events[-1] == "W cuStreamSynchronize", block
        if "S cuLaunchKernel" not in events:
            continue
        marks = [f"{m} -" for m in sent]
        assert all(m in events for m in marks), block
        at = [events.index("S cuLaunchKernel")] + [events.index(m) for m in marks]
        assert at == sorted(at), block
        token_windows += count
    assert token_windows >= TOKENS - 4, out.stdout
