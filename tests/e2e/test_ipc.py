"""CUDA IPC between an application's processes (issue 14, native/worker/handlers/ipc.c):
a handle one process's worker made opens in another process's worker of the
same tenant, and nowhere else: not in a session of another token, not for
bytes no worker made."""

import subprocess
import time

import pytest

from conftest import GPUWIRE, PROGRAMS_DIR, explain, gpuwire_env, gw_run, start_server
from gpuwire import auth

PROGRAM = PROGRAMS_DIR / "ipc_shared"


def need_program():
    if not PROGRAM.exists():
        pytest.skip("build/programs/ipc_shared is not built (run scripts/setup)")


def test_parent_and_child_share_device_memory(server):
    need_program()
    r = gw_run([str(PROGRAM)], server=server.address, timeout=120)
    assert r.returncode == 0, explain(r, server)
    assert "child: read the parent's bytes and wrote its own" in r.stdout, explain(r, server)
    assert r.stdout.strip().splitlines()[-1] == "PASS ipc", explain(r, server)


def exporter(srv, token):
    env = gpuwire_env({"GPUWIRE_TOKEN": token})
    p = subprocess.Popen(GPUWIRE + ["run", "--server", srv.address, "--", str(PROGRAM), "export"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if line.startswith("HANDLE "):
            return p, line.split()[1]
        if not line and p.poll() is not None:
            break
    p.kill()
    pytest.fail("the exporter printed no handle: " + p.stderr.read())


def test_a_handle_opens_only_for_its_tenant(tmp_path):
    need_program()
    tf = tmp_path / "tokens.json"
    store = auth.TokenStore(tf)
    ta, _ = store.create("a")
    tb, _ = store.create("b")
    srv = start_server(tmp_path / "server.log", extra_args=("--tokens-file", str(tf), "--require-auth"))
    try:
        p, handle = exporter(srv, ta)
        try:
            other = gw_run([str(PROGRAM), "child", handle], server=srv.address, env={"GPUWIRE_TOKEN": tb})
            assert other.returncode == 1 and "cudaIpcOpenMemHandle" in other.stdout, explain(other, srv)
            assert "FAIL ipc" in other.stdout, explain(other, srv)
            # bytes no worker made (one bit of the real handle flipped) do not open either
            forged = handle[:-1] + ("0" if handle[-1] != "0" else "1")
            bad = gw_run([str(PROGRAM), "child", forged], server=srv.address, env={"GPUWIRE_TOKEN": ta})
            assert bad.returncode == 1, explain(bad, srv)
            same = gw_run([str(PROGRAM), "child", handle], server=srv.address, env={"GPUWIRE_TOKEN": ta})
            assert same.returncode == 0, explain(same, srv)
            out, err = p.communicate("go\n", timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
        assert p.returncode == 0 and out.strip().splitlines()[-1] == "PASS ipc", out + err
        log = (tmp_path / "server.log").read_text()
        assert "the handle belongs to another tenant" in log
        assert "no session of this server made that handle" in log
    finally:
        srv.stop()
