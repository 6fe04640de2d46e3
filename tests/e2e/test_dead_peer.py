"""A client whose machine vanishes (no FIN, no RST) no longer keeps its lease
forever (issue 18, finding 4): every connection has TCP keepalive and a user
timeout, so the session ends and the exclusive lease is freed after
--dead-peer-timeout (idle connection: keepalive) or 1.5 x --client-stall-timeout
(data left unacknowledged: the user timeout), whichever applies. The client runs in a network namespace this test makes,
joined to the server by a veth pair; the vanishing is its end of the link going
down. Needs root and iproute2 (CI runs as root)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

from conftest import GPUWIRE, ServerProcess, gpuwire_env, native_client_lib

IP = shutil.which("ip")
pytestmark = pytest.mark.skipif(IP is None or os.geteuid() != 0,
                                reason="needs root and iproute2 for a network namespace")

NS = f"gwdead{os.getpid()}"
HOST_IF, NS_IF = f"gwh{os.getpid() % 100000}", f"gwn{os.getpid() % 100000}"
SERVER_IP, CLIENT_IP = "10.213.7.1", "10.213.7.2"

HOLDER = r"""
import ctypes, sys, time
cu = ctypes.CDLL("libcuda.so.1")
ctx, ptr = ctypes.c_void_p(), ctypes.c_uint64()
assert cu.cuInit(0) == 0 and cu.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), 0) == 0
assert cu.cuCtxSetCurrent(ctx) == 0 and cu.cuMemAlloc_v2(ctypes.byref(ptr), 1 << 20) == 0
print("ready", flush=True)
time.sleep(120)
"""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([IP, *args], capture_output=True, text=True, timeout=30, check=check)


@pytest.fixture
def netns():
    r = _ip("netns", "add", NS, check=False)
    if r.returncode != 0:
        pytest.skip(f"cannot make a network namespace here: {r.stderr.strip()}")
    try:
        _ip("link", "add", HOST_IF, "type", "veth", "peer", "name", NS_IF)
        _ip("link", "set", NS_IF, "netns", NS)
        _ip("addr", "add", f"{SERVER_IP}/30", "dev", HOST_IF)
        _ip("link", "set", HOST_IF, "up")
        _ip("-n", NS, "addr", "add", f"{CLIENT_IP}/30", "dev", NS_IF)
        _ip("-n", NS, "link", "set", NS_IF, "up")
        _ip("-n", NS, "link", "set", "lo", "up")
        yield NS
    finally:
        _ip("link", "del", HOST_IF, check=False)
        _ip("netns", "del", NS, check=False)


def _start_server(tmp_path, extra: tuple[str, ...] = ()) -> ServerProcess:
    log_path = tmp_path / "server.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(GPUWIRE + ["server", "--listen", f"{SERVER_IP}:0", "--driver", "standin",
                                       "--log-level", "DEBUG", "--insecure-no-auth", "--insecure-no-tls",
                                       "--dead-peer-timeout", "3", "--client-stall-timeout", "2",
                                       "--lease-idle-timeout", "0", *extra],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                            env=gpuwire_env({"GPUWIRE_CACHE_DIR": str(tmp_path / "cache")}))
    log.close()
    deadline = time.monotonic() + 90
    import re
    while True:
        m = re.search(r"listening on .* address=10\.213\.7\.1:(\d+) ", log_path.read_text(errors="replace"))
        if m:
            return ServerProcess(proc, log_path, SERVER_IP, int(m.group(1)))
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("server did not start:\n" + log_path.read_text(errors="replace"))
        time.sleep(0.05)


def test_vanished_client_frees_its_exclusive_lease(netns, tmp_path):
    if not native_client_lib().exists():
        pytest.skip("native parts not built")
    srv = _start_server(tmp_path)
    holder = None
    try:
        holder = subprocess.Popen([IP, "netns", "exec", netns, *GPUWIRE, "run", "--server", srv.address,
                                   "--exclusive", "--no-tls", "--", sys.executable, "-c", HOLDER],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env=gpuwire_env())
        line = holder.stdout.readline()
        assert line.strip() == "ready", holder.stderr.read() if holder.poll() is not None else line
        sid = srv.wait_for_log(r"lease granted\" session=(\d+) ").group(1)
        # the client's machine vanishes: its end of the link goes down, nothing is sent
        _ip("-n", netns, "link", "set", NS_IF, "down")
        t0 = time.monotonic()
        srv.wait_for_log(r"session end", timeout=20, session=sid)
        took = time.monotonic() - t0
        assert took < 15, f"the session ended {took:.1f} s after its peer vanished (dead-peer timeout 3 s)"
        # the exclusive lease is free again: a client that will not wait gets it
        r = subprocess.run(GPUWIRE + ["run", "--server", srv.address, "--exclusive", "--no-wait", "--no-tls",
                                      "--", sys.executable, "-c", HOLDER.replace("time.sleep(120)", "")],
                           capture_output=True, text=True, timeout=60, env=gpuwire_env())
        assert r.returncode == 0 and "ready" in r.stdout, r.stderr + "\n" + srv.log_text()[-3000:]
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()
        srv.stop()
