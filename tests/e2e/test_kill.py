"""A client killed with SIGKILL in the middle of a 1 GiB host-to-device copy:
its worker process exits within a second (taking the stand-in's device memory,
which is that process's memory, with it), the server logs the session's end,
and a client running at the same time finishes correctly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import GPUWIRE, NOT_BUILT, PROGRAMS_DIR, explain, gpuwire_env, gw_run, start_server

PRELUDE = r"""
import ctypes, mmap, os, sys
cu = ctypes.CDLL("libcuda.so.1")
u64 = ctypes.c_uint64
cu.cuMemAlloc_v2.argtypes = [ctypes.POINTER(u64), ctypes.c_size_t]
cu.cuMemFree_v2.argtypes = [u64]
cu.cuMemcpyHtoD_v2.argtypes = [u64, ctypes.c_void_p, ctypes.c_size_t]
cu.cuMemcpyDtoH_v2.argtypes = [ctypes.c_void_p, u64, ctypes.c_size_t]
ctx = ctypes.c_void_p()
assert cu.cuInit(0) == 0
assert cu.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), 0) == 0 and cu.cuCtxSetCurrent(ctx) == 0
"""

# copies 1 GiB to the device again and again until it is killed
VICTIM = PRELUDE + r"""
GIB = 1 << 30
dev = u64()
assert cu.cuMemAlloc_v2(ctypes.byref(dev), GIB) == 0
host = mmap.mmap(-1, GIB)  # zero pages: costs the client no memory
addr = ctypes.addressof(ctypes.c_char.from_buffer(host))
for i in range(1000):
    print(f"copy {i}", flush=True)
    assert cu.cuMemcpyHtoD_v2(dev, addr, GIB) == 0
"""

# round trips of 8 MiB with a fresh pattern each time, until told to stop
SURVIVOR = PRELUDE + r"""
N = 8 << 20
dev = u64()
assert cu.cuMemAlloc_v2(ctypes.byref(dev), N) == 0
back = ctypes.create_string_buffer(N)
rounds = 0
while True:
    stop = os.path.exists(sys.argv[1])
    data = bytes([(rounds * 7 + k) & 0xFF for k in range(256)]) * (N // 256)
    assert cu.cuMemcpyHtoD_v2(dev, data, N) == 0
    assert cu.cuMemcpyDtoH_v2(back, dev, N) == 0
    assert back.raw == data, f"round {rounds}: device memory does not hold what was copied"
    rounds += 1
    if rounds == 1:
        print("running", flush=True)
    if stop:
        break
assert cu.cuMemFree_v2(dev) == 0
print(f"PASS survivor: {rounds} round trips")
"""


class Lines:
    """A subprocess's stdout, read line by line on a thread."""

    def __init__(self, proc: subprocess.Popen):
        self.lines: list[str] = []
        self.cv = threading.Condition()
        self.reader = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.reader.start()

    def _read(self, proc):
        for line in proc.stdout:
            with self.cv:
                self.lines.append(line.rstrip("\n"))
                self.cv.notify_all()

    def wait_for_end(self, proc: subprocess.Popen, timeout: float) -> None:
        proc.wait(timeout)
        self.reader.join(10)

    def wait_for(self, text: str, timeout: float) -> None:
        with self.cv:
            if not self.cv.wait_for(lambda: text in self.lines, timeout):
                pytest.fail(f"no line {text!r} within {timeout} s; got {self.lines[-10:]}")


def _gw_popen(script: Path, server: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(GPUWIRE + ["run", "--server", server, "--", sys.executable, str(script), *args],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=gpuwire_env())


def _state(pid: int) -> str:
    """'gone', 'Z' (exited, not yet reaped: its memory is already freed) or a running state."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "gone"


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_sigkill_mid_transfer_frees_the_worker(tmp_path):
    srv = start_server(tmp_path / "server.log")
    stop = tmp_path / "stop"
    (tmp_path / "victim.py").write_text(VICTIM)
    (tmp_path / "survivor.py").write_text(SURVIVOR)
    victim = survivor = None
    try:
        survivor = _gw_popen(tmp_path / "survivor.py", srv.address, str(stop))
        survivor_out = Lines(survivor)
        survivor_out.wait_for("running", 60)

        victim = _gw_popen(tmp_path / "victim.py", srv.address)
        victim_out = Lines(victim)
        sid = srv.session_of_pid(victim.pid)
        worker = int(srv.wait_for_log(r"session start.* worker_pid=(\d+)", session=sid).group(1))
        victim_out.wait_for("copy 1", 120)  # one 1 GiB copy done, the next under way
        time.sleep(0.05)
        rss = _rss_mib(worker)
        assert rss > 512, f"the worker holds only {rss:.0f} MiB after a 1 GiB copy"
        victim.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        while _state(worker) not in ("gone", "Z") and time.monotonic() - killed < 5:
            time.sleep(0.01)
        gone_after = time.monotonic() - killed
        assert _state(worker) in ("gone", "Z"), f"worker {worker} still runs 5 s after its client was killed"
        assert gone_after < 1.0, f"worker {worker} took {gone_after:.2f} s to exit after its client was killed"
        assert "copy 2" not in victim_out.lines, "the kill did not land during the second copy"
        print(f"worker {worker}: {rss:.0f} MiB resident when its client was killed, exited {gone_after * 1000:.0f} ms later")
        assert victim.wait(10) == -signal.SIGKILL
        srv.wait_for_log(r"session end", session=sid, timeout=10)

        # the other client kept going through all this; a new one is served too
        stop.touch()
        survivor_out.wait_for_end(survivor, 120)
        out = "\n".join(survivor_out.lines)
        assert survivor.returncode == 0 and "PASS survivor" in out, (
            f"survivor failed ({survivor.returncode}):\n{out}\n{survivor.stderr.read()}\n"
            + "\n".join(srv.log_lines()[-30:]))
        prog = PROGRAMS_DIR / "vector_add_shared"
        if not prog.is_file():
            pytest.skip(NOT_BUILT)
        r = gw_run([str(prog)], srv.address, timeout=120)
        assert r.returncode == 0 and r.stdout.strip().splitlines()[-1].startswith("PASS"), explain(r, srv)
        assert srv.alive()
    finally:
        for p in (victim, survivor):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()
        srv.stop()
