"""Job tokens as a running server enforces them, without Slurm (a stand-in
server with --require-auth; the admin requests a prolog would send): a job's
second session queued behind its first leaves the queue when the job is
revoked, the first's worker is ended, and an admin token runs no session."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import GPUWIRE, gpuwire_env, gw_python_client, start_server

from gpuwire.auth import TokenStore
from gpuwire.slurm import admin_client

HOLD = "import ctypes, sys\nctypes.CDLL('libcuda.so.1').cuInit(0)\nprint('ready', flush=True)\nsys.stdin.readline()\n"
INIT = "import ctypes, sys\nsys.exit(ctypes.CDLL('libcuda.so.1').cuInit(0))\n"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    root = tmp_path_factory.mktemp("jobtokens")
    admin, _ = TokenStore(root / "tokens.json").create("slurm-admin", role="admin")
    srv = start_server(root / "server.log", extra_args=("--require-auth", "--tokens-file", str(root / "tokens.json"),
                                                        "--queue-interval", "0.5"))
    yield srv, admin
    srv.stop()


def test_revoking_a_job_ends_its_session_and_empties_its_queue(guarded):
    srv, admin = guarded
    job = admin_client.request(srv.address, admin, {"op": "mint", "job": "41", "gpus": [0]})
    env = {"GPUWIRE_TOKEN": job["token"], "GPUWIRE_LEASE": "exclusive"}
    first = gw_python_client(srv.address, HOLD, env=env)
    second = None
    try:
        second = subprocess.Popen(GPUWIRE + ["run", "--server", srv.address, "--", sys.executable, "-c", INIT],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env=gpuwire_env(env))
        srv.wait_for_log(r"waiting for an exclusive lease on GPU 0")
        reply = admin_client.request(srv.address, admin, {"op": "revoke", "job": "41"})
        assert reply["revoked"] == 1 and reply["sessions_ended"] == 1, reply
        _, err = second.communicate(timeout=30)
        assert second.returncode != 0 and "this token was revoked" in err, err
        srv.wait_for_log(r'msg="session end" .*status="killed by SIGTERM"')
        srv.wait_for_log(r"token revoked while queued")
        assert len([ln for ln in srv.log_lines() if 'msg="session start"' in ln]) == 1  # no worker for the second
    finally:
        first.kill()
        first.wait()
        if second is not None and second.poll() is None:
            second.kill()
            second.wait()
    # the revoked token opens nothing any more
    r = subprocess.run(GPUWIRE + ["run", "--server", srv.address, "--", sys.executable, "-c", INIT],
                       capture_output=True, text=True, timeout=30, env=gpuwire_env({"GPUWIRE_TOKEN": job["token"]}))
    assert r.returncode != 0 and "authentication failed" in r.stderr, r.stderr


def test_an_admin_token_runs_no_session(guarded):
    srv, admin = guarded
    r = subprocess.run(GPUWIRE + ["run", "--server", srv.address, "--", sys.executable, "-c", INIT],
                       capture_output=True, text=True, timeout=30, env=gpuwire_env({"GPUWIRE_TOKEN": admin}))
    assert r.returncode != 0 and "it runs no session" in r.stderr, r.stderr
