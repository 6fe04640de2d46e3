"""POSIX file-descriptor handles of the virtual memory API between an
application's processes (cuMemExportToShareableHandle /
cuMemImportFromShareableHandle; docs/multi-gpu.md): tests/programs/vmm_ipc
passes an exported allocation's fd to a child with SCM_RIGHTS, natively on
the stand-in and through gpuwire, where the fd is the client's memfd record
and the workers pass the driver's fd between them
(native/worker/handlers/shareable.c); the same for a memory pool's fd and an
allocation's export data (streamOrderedAllocationIPC's pattern). Another
tenant's session cannot import an fd, nor can anyone import a forged one."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from conftest import GPUWIRE, PROGRAMS_DIR, explain, gpuwire_env, gw_run, start_server
from gpuwire import auth, paths

PROGRAM = PROGRAMS_DIR / "vmm_ipc"
STANDIN = paths.NATIVE_DIR / "libgpuwire_standin.so"


@pytest.fixture(autouse=True)
def _need_program():
    if not PROGRAM.is_file():
        pytest.skip("build/programs/vmm_ipc is not built (make -C tests/programs)")


@pytest.fixture(scope="module")
def native_dir(tmp_path_factory):
    """A directory whose libcuda.so.1 is the stand-in itself: no gpuwire in between."""
    if not STANDIN.is_file():
        pytest.skip(f"{STANDIN} is not built (./scripts/setup)")
    d = tmp_path_factory.mktemp("native")
    os.symlink(STANDIN, d / "libcuda.so.1")
    return d


def run_native(native_dir, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(PROGRAM), *args], capture_output=True, text=True, timeout=60,
                          env=gpuwire_env({"LD_LIBRARY_PATH": str(native_dir)}))


def test_native_parent_and_child_share_an_allocation(native_dir):
    r = run_native(native_dir)
    assert r.returncode == 0, explain(r)
    assert "importer: read the exporter's floats and scaled them" in r.stdout, explain(r)
    assert r.stdout.strip().splitlines()[-1] == "PASS vmm_ipc", explain(r)


def test_native_forged_fds_are_refused(native_dir):
    r = run_native(native_dir, "forged")
    assert r.returncode == 0, explain(r)
    # CUDA_ERROR_UNKNOWN, as the H100's driver answers (gpu-check vmm_ipc_forged, 2026-12-07)
    assert "forged: a memfd of the right size refused (999)" in r.stdout, explain(r)
    assert "forged: a pipe refused (999)" in r.stdout, explain(r)


def test_parent_and_child_share_an_allocation_through_gpuwire(server):
    r = gw_run([str(PROGRAM)], server=server.address, timeout=120)
    assert r.returncode == 0, explain(r, server)
    # the child (its own client and worker) saw the parent's floats and its kernel's
    # result reached the parent's mapping; the parent's own re-import read it too
    assert "importer: read the exporter's floats and scaled them" in r.stdout, explain(r, server)
    assert "parent: saw the child's kernel write its allocation" in r.stdout, explain(r, server)
    assert r.stdout.strip().splitlines()[-1] == "PASS vmm_ipc", explain(r, server)


def test_forged_fds_are_refused_through_gpuwire(server):
    r = gw_run([str(PROGRAM), "forged"], server=server.address, timeout=120)
    assert r.returncode == 0, explain(r, server)
    for what in ("a memfd of the right size", "a pipe"):
        assert f"forged: {what} refused (999)" in r.stdout, explain(r, server)  # CUDA_ERROR_UNKNOWN, as natively
    assert "not a handle a gpuwire client exported" in r.stderr, explain(r, server)
    # the program's record with a flipped id reached the worker, which refused it
    assert any("never exported handle id" in line for line in server.log_lines()), explain(r, server)


def test_native_pool_shared_with_a_child(native_dir):
    r = run_native(native_dir, "pool")
    assert r.returncode == 0, explain(r)
    assert "pool importer: read the exporter's floats and scaled them" in r.stdout, explain(r)
    assert r.stdout.strip().splitlines()[-1] == "PASS vmm_ipc", explain(r)


def test_pool_shared_with_a_child_through_gpuwire(server):
    r = gw_run([str(PROGRAM), "pool"], server=server.address, timeout=120)
    assert r.returncode == 0, explain(r, server)
    assert "pool importer: read the exporter's floats and scaled them" in r.stdout, explain(r, server)
    assert "pool parent: saw the child's kernel write its pool allocation" in r.stdout, explain(r, server)
    assert r.stdout.strip().splitlines()[-1] == "PASS vmm_ipc", explain(r, server)


def exporter(srv, token: str, path: str) -> subprocess.Popen:
    env = gpuwire_env({"GPUWIRE_TOKEN": token})
    p = subprocess.Popen(GPUWIRE + ["run", "--server", srv.address, "--", str(PROGRAM), "export", path],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        if line.strip() == "READY":
            return p
        if not line and p.poll() is not None:
            break
    p.kill()
    pytest.fail("the exporter did not start: " + p.stderr.read())


def test_an_fd_imports_only_for_its_tenant(tmp_path):
    tf = tmp_path / "tokens.json"
    store = auth.TokenStore(tf)
    ta, _ = store.create("a")
    tb, _ = store.create("b")
    log = tmp_path / "server.log"
    srv = start_server(log, extra_args=("--tokens-file", str(tf), "--require-auth"))
    sock = str(tmp_path / "fd.sock")
    try:
        p = exporter(srv, ta, sock)
        try:
            other = gw_run([str(PROGRAM), "import", sock], server=srv.address, env={"GPUWIRE_TOKEN": tb})
            assert other.returncode == 1, explain(other, srv)
            assert "cuMemImportFromShareableHandle" in other.stdout and "-> 1 " in other.stdout, explain(other, srv)
            # the same tenant, another session, an id that session never exported
            forged = gw_run([str(PROGRAM), "import", sock, "forge"], server=srv.address, env={"GPUWIRE_TOKEN": ta})
            assert forged.returncode == 0, explain(forged, srv)
            assert "forged: another session's record with a forged id refused (1)" in forged.stdout, explain(forged, srv)
            same = gw_run([str(PROGRAM), "import", sock], server=srv.address, env={"GPUWIRE_TOKEN": ta})
            assert same.returncode == 0, explain(same, srv)
            out, err = p.communicate("go\n", timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
        # the exporter sees the floats the same tenant's importer scaled
        assert p.returncode == 0 and out.strip().splitlines()[-1] == "PASS vmm_ipc", out + err
        text = log.read_text()
        assert "no live session" in text and "of this tenant exported handles" in text, text[-3000:]
        assert "which this session never exported: refused" in text, text[-3000:]  # the exporter's broker
        assert "of this tenant has no handle id" in text, text[-3000:]  # the importer's worker
    finally:
        srv.stop()
