"""Leases on "any N GPUs" end to end (`gpuwire run --gpus N`, GPUWIRE_GPUS):
a server with three stand-in devices grants the first free ones in its order,
the program sees exactly those (devices 0..N-1, CUDA_VISIBLE_DEVICES counting
in them), a request beyond the server's GPUs is refused at once naming both
numbers, and a count lease leaves the rest free (docs/server.md "Leases").

The stand-in's three devices in the server's order (FASTEST_FIRST): p0, p2,
p1 (UUIDs end in p + 1)."""

from __future__ import annotations

import re
import subprocess

import pytest

from conftest import GPUWIRE, PROGRAMS_DIR, explain, gpuwire_env, gw_python_client, gw_run, start_server

PROGRAM = PROGRAMS_DIR / "multi_device"
DEVICES = 3
UUID = "GPU-67707577-6972-652d-7374-616e64696e{:02x}"
SERVER_ORDER = [0, 2, 1]  # the server's GPU index i is physical device SERVER_ORDER[i]
DEV_UUID = re.compile(r"^DEV \d+ uuid=(\S+) ", re.M)
HOLD = "import ctypes, sys\nctypes.CDLL('libcuda.so.1').cuInit(0)\nprint('ready', flush=True)\nsys.stdin.readline()\n"


def uuid(server_index: int) -> str:
    return UUID.format(SERVER_ORDER[server_index] + 1)


@pytest.fixture(autouse=True)
def _no_cuda_env(monkeypatch):
    for k in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER"):
        monkeypatch.delenv(k, raising=False)


@pytest.fixture(scope="module")
def server3(tmp_path_factory):
    if not PROGRAM.is_file():
        pytest.skip("build/programs/multi_device is not built (make -C tests/programs)")
    with pytest.MonkeyPatch.context() as mp:
        for k in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER"):
            mp.delenv(k, raising=False)
        srv = start_server(tmp_path_factory.mktemp("count") / "server.log",
                           env={"GPUWIRE_STANDIN_DEVICES": str(DEVICES)})
    yield srv
    srv.stop()


def listed(server, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, list[str]]:
    r = gw_run([str(PROGRAM), "list"], server=server.address, env=env, timeout=60)
    return r, DEV_UUID.findall(r.stdout)


def test_any_two_gpus_are_the_first_two(server3):
    r, got = listed(server3, {"GPUWIRE_GPUS": "2"})
    assert r.returncode == 0 and got == [uuid(0), uuid(1)], explain(r, server3)
    r, got = listed(server3, {"GPUWIRE_GPUS": "2", "CUDA_VISIBLE_DEVICES": "1"})
    assert r.returncode == 0 and got == [uuid(1)], explain(r, server3)


def test_the_gpus_run_flag(server3):
    r = subprocess.run(GPUWIRE + ["run", "--server", server3.address, "--gpus", "3", "--", str(PROGRAM), "list"],
                       capture_output=True, text=True, timeout=60, env=gpuwire_env())
    assert r.returncode == 0 and DEV_UUID.findall(r.stdout) == [uuid(i) for i in range(3)], explain(r, server3)
    both = subprocess.run(GPUWIRE + ["run", "--server", server3.address, "--gpu", "0", "--gpus", "1", "--",
                                     str(PROGRAM), "list"], capture_output=True, text=True, timeout=60,
                          env=gpuwire_env())
    assert both.returncode == 2 and "not both" in both.stderr, both.stderr


def test_more_gpus_than_the_server_has_is_refused_at_once(server3):
    r, got = listed(server3, {"GPUWIRE_GPUS": "4"})
    assert r.returncode != 0 and not got
    assert "4 GPUs asked for, but this server has 3" in r.stderr, explain(r, server3)


def test_a_count_lease_skips_an_exclusively_held_gpu(server3):
    holder = gw_python_client(server3.address, HOLD, env={"GPUWIRE_GPU": "0", "GPUWIRE_LEASE": "exclusive"})
    try:
        r, got = listed(server3, {"GPUWIRE_GPUS": "2", "GPUWIRE_LEASE": "exclusive", "GPUWIRE_NO_WAIT": "1"})
        assert r.returncode == 0 and got == [uuid(1), uuid(2)], explain(r, server3)
        busy, got = listed(server3, {"GPUWIRE_GPUS": "3", "GPUWIRE_NO_WAIT": "1"})
        assert busy.returncode != 0 and not got, explain(busy, server3)
        assert "a shared lease on any 3 GPUs is not available now" in busy.stderr, explain(busy, server3)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
