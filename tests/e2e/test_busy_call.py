"""A session stuck in a call says which: the worker records the request it is
running (session-stats block, `busy_op`), `gpuwire status` shows it as
`busy_call` beside `busy_s`, and the server's log names it once a call has run
for BUSY_REPORT_S seconds (server/sessions.py)."""

from __future__ import annotations

import json
import re
import subprocess
import time

import pytest

from conftest import GPUWIRE, PROGRAMS_DIR, ROOT, gpuwire_env, gw_run, start_server


def pipeline_program():
    exe = PROGRAMS_DIR / "async_pipeline_shared"
    if not exe.exists():
        pytest.skip("build/programs/async_pipeline_shared is not built (make -C tests/programs)")
    return exe


def test_status_names_the_call_a_session_waits_in(server):
    exe = pipeline_program()
    # nostall: a 2 s stream synchronize on one thread while others keep calling
    proc = subprocess.Popen(GPUWIRE + ["run", "--server", server.address, "--", str(exe), "nostall"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=gpuwire_env())
    seen = set()
    try:
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            r = subprocess.run(GPUWIRE + ["status", "--server", server.address, "--json", "--bytes", "0"],
                               capture_output=True, text=True, env=gpuwire_env(), timeout=30)
            for s in json.loads(r.stdout)["status"]["sessions"]:
                if s.get("busy_s") is not None:
                    seen.add(s.get("busy_call"))
            time.sleep(0.05)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert seen & {"cuStreamSynchronize", "cuStreamSynchronize_ptsz"}, seen
    assert None not in seen


def test_the_log_names_a_long_call(tmp_path):
    exe = pipeline_program()
    srv = start_server(tmp_path / "server.log", extra_args=("--busy-report-after", "0.5"))
    try:
        r = gw_run([str(exe), "nostall"], srv.address)  # one 2 s stream synchronize
        assert r.returncode == 0, r.stderr
        line = srv.wait_for_log(r"a call has run for \d+ s: cuStreamSynchronize(_ptsz)? \(the client waits for it\)")
        assert "level=WARN" in line.string
        # reported at 0.5 s and again at 1 s (doubling), not at every check
        assert len(re.findall(r"a call has run for", srv.log_text())) <= 3
    finally:
        srv.stop()


def test_op_names():
    from gpuwire import protocol
    assert protocol.op_name(protocol.OP_FIRST_CALL) == protocol.DRIVER_OP_NAMES[0]
    assert protocol.op_name(protocol.OP_DELIVER) == "DELIVER"
    assert protocol.op_name(65535) == "op 65535"
    assert (ROOT / "codegen" / "driver_symbols.txt").read_text().split()[0] in protocol.DRIVER_OP_NAMES
