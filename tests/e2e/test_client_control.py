"""The C client's side of the control plane against a real server and the
stand-in: token challenge-response, memory caps enforced by the worker, and
exclusive leases queueing (issue 6)."""

import subprocess
import sys
import time

import pytest

from conftest import GPUWIRE, ROOT, explain, gpuwire_env, gw_run, start_server

VECTOR_ADD = ROOT / "build" / "programs" / "vector_add_shared"
DEVICE_PROPS = ROOT / "build" / "programs" / "device_props_shared"

# A client that opens a session, then holds it until told to stop (stdin closes).
HOLDER = ("import ctypes, sys; c = ctypes.CDLL('libcuda.so.1'); assert c.cuInit(0) == 0; "
          "print('holding', flush=True); sys.stdin.read()")


@pytest.fixture(autouse=True)
def need_programs():
    if not VECTOR_ADD.exists():
        pytest.skip("test programs not built (run scripts/setup)")


@pytest.fixture
def auth_server(tmp_path):
    state = tmp_path / "state"
    env = gpuwire_env({"GPUWIRE_STATE_DIR": str(state)})
    out = subprocess.run(GPUWIRE + ["token", "create", "--name", "ci"], env=env, capture_output=True, text=True,
                         check=True).stdout
    token = next(w for w in out.split() if "." in w and len(w) == 81)
    srv = start_server(tmp_path / "auth.log", extra_args=("--require-auth", "--state-dir", str(state)))
    yield srv, token
    srv.stop()


def test_right_token_is_accepted(auth_server):
    srv, token = auth_server
    r = gw_run([str(VECTOR_ADD)], server=srv.address, env={"GPUWIRE_TOKEN": token})
    assert r.returncode == 0, explain(r, srv)


def test_wrong_token_is_refused_with_a_clear_message(auth_server):
    srv, token = auth_server
    forged = token[:17] + ("0" if token[17] != "0" else "1") + token[18:]
    r = gw_run([str(VECTOR_ADD)], server=srv.address, env={"GPUWIRE_TOKEN": forged})
    assert r.returncode != 0
    assert "authentication failed" in r.stderr, r.stderr


def test_missing_token_says_what_to_do(auth_server):
    srv, _ = auth_server
    r = gw_run([str(VECTOR_ADD)], server=srv.address)
    assert r.returncode != 0
    assert "requires a token" in r.stderr and "GPUWIRE_TOKEN" in r.stderr, r.stderr


def test_memory_cap_is_enforced_and_reported(server):
    r = gw_run([str(DEVICE_PROPS)], server=server.address, env={"GPUWIRE_MEM_CAP": "8M"})
    # device_props reports the capped view, then its 64 MiB allocation fails as out of memory
    assert "8 MiB" in r.stdout, explain(r, server)
    assert "cudaErrorMemoryAllocation" in r.stdout, explain(r, server)
    ok = gw_run([str(VECTOR_ADD)], server=server.address, env={"GPUWIRE_MEM_CAP": "1G"})
    assert ok.returncode == 0, explain(ok, server)


def test_exclusive_lease_queues_then_runs_and_no_wait_refuses(tmp_path):
    srv = start_server(tmp_path / "lease.log", extra_args=("--queue-interval", "0.2"))
    try:
        env = gpuwire_env({"GPUWIRE_LEASE": "exclusive"})
        holder = subprocess.Popen(GPUWIRE + ["run", "--server", srv.address, "--", sys.executable, "-c", HOLDER],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=env)
        assert holder.stdout.readline().strip() == "holding"
        refused = gw_run([str(VECTOR_ADD)], server=srv.address, env={"GPUWIRE_LEASE": "exclusive",
                                                                     "GPUWIRE_NO_WAIT": "1"})
        assert refused.returncode != 0 and "refused" in refused.stderr, refused.stderr
        waiter = subprocess.Popen(GPUWIRE + ["run", "--server", srv.address, "--", str(VECTOR_ADD)],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=env)
        time.sleep(1.0)
        assert waiter.poll() is None, "the second exclusive client did not wait"
        holder.stdin.close()
        holder.wait(timeout=30)
        out, err = waiter.communicate(timeout=60)
        assert waiter.returncode == 0, out + err
        assert "PASS vector_add" in out
        # the client printed the server's progress: position, holder, time waited
        assert "waiting for an exclusive lease" in err and "position 1" in err and "held by" in err, err
    finally:
        srv.stop()
