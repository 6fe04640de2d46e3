"""NVML's process queries answer a client only about its own processes (issue
18, finding 8): the workers serving it are named and listed; the server, other
sessions' workers and any other pid are not (NVML_ERROR_NOT_FOUND, as for a
pid NVML cannot see), and process lists leave them out. The stand-in NVML
lists every gpuwire worker as holding its GPU, as a shared GPU would."""

import json
import sys
from pathlib import Path

from conftest import explain, gw_python_client, gw_run

NVML_SUCCESS, NVML_ERROR_NOT_FOUND, NVML_ERROR_INSUFFICIENT_SIZE = 0, 6, 7

APP = r"""
import ctypes, json, os
nv = ctypes.CDLL("libnvidia-ml.so.1")
class Info(ctypes.Structure):
    _fields_ = [("pid", ctypes.c_uint), ("usedGpuMemory", ctypes.c_ulonglong), ("gi", ctypes.c_uint),
                ("ci", ctypes.c_uint)]
def procs(h):
    n = ctypes.c_uint(0)
    probe = nv.nvmlDeviceGetComputeRunningProcesses_v3(h, ctypes.byref(n), None)
    infos = (Info * 64)(); m = ctypes.c_uint(64)
    rc = nv.nvmlDeviceGetComputeRunningProcesses_v3(h, ctypes.byref(m), infos)
    return {"probe": probe, "probe_n": n.value, "rc": rc, "pids": [infos[i].pid for i in range(m.value)]}
def name(pid):
    buf = ctypes.create_string_buffer(64)
    rc = nv.nvmlSystemGetProcessName(ctypes.c_uint(pid), buf, 64)
    return [rc, buf.value.decode(errors="replace") if rc == 0 else None]
res = {"pid": os.getpid(), "init": nv.nvmlInit_v2()}
h = ctypes.c_void_p()
nv.nvmlDeviceGetHandleByIndex_v2(0, ctypes.byref(h))
res["nvml_only"] = procs(h)
cu = ctypes.CDLL("libcuda.so.1")       # a CUDA session too: a second worker serving this process
res["cu_init"] = cu.cuInit(0)
res["with_cuda"] = procs(h)
others = {k: int(os.environ[k]) for k in ("SERVER_PID", "NEIGHBOUR_WORKER")}
others["NO_SUCH_PID"] = 4_000_000
others["INIT"] = 1
res["names"] = {str(p): name(p) for p in res["with_cuda"]["pids"]}
res["others"] = {k: name(p) for k, p in others.items()}
print("RESULT " + json.dumps(res))
"""

NEIGHBOUR = r"""
import ctypes, os, sys
assert ctypes.CDLL("libcuda.so.1").cuInit(0) == 0
print("ready", flush=True)
print(os.getpid(), flush=True)
sys.stdin.read()
"""


def children(pid: int) -> dict[int, list[str]]:
    """Child processes of `pid` with their command lines."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                out[int(entry.name)] = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except (OSError, ValueError, IndexError):
            continue
    return out


def client_pid_of(argv: list[str]) -> int | None:
    text = argv[argv.index("--client") + 1] if "--client" in argv else ""
    return next((int(f[4:]) for f in text.split() if f.startswith("pid=")), None)


def test_nvml_process_queries_answer_only_for_the_clients_own_processes(server):
    neighbour = gw_python_client(server.address, NEIGHBOUR)
    try:
        npid = int(neighbour.stdout.readline())
        workers = [w for w, argv in children(server.proc.pid).items() if client_pid_of(argv) == npid]
        assert len(workers) == 1, children(server.proc.pid)
        env = {"SERVER_PID": str(server.proc.pid), "NEIGHBOUR_WORKER": str(workers[0])}
        r = gw_run([sys.executable, "-c", APP], server=server.address, env=env, timeout=60)
        assert r.returncode == 0, explain(r, server)
        res = json.loads(next(ln for ln in r.stdout.splitlines() if ln.startswith("RESULT "))[7:])
        assert neighbour.poll() is None, "the neighbour's session ended meanwhile"
    finally:
        neighbour.stdin.close()
        neighbour.wait(30)
    assert res["init"] == NVML_SUCCESS and res["cu_init"] == 0, res
    # its NVML session's worker alone, then that and its CUDA session's worker: the neighbour's is left out
    one, two = res["nvml_only"], res["with_cuda"]
    assert (one["probe"], one["probe_n"], one["rc"], len(one["pids"])) == (NVML_ERROR_INSUFFICIENT_SIZE, 1,
                                                                         NVML_SUCCESS, 1), res
    assert (two["probe"], two["probe_n"], two["rc"], len(two["pids"])) == (NVML_ERROR_INSUFFICIENT_SIZE, 2,
                                                                         NVML_SUCCESS, 2), res
    assert one["pids"][0] in two["pids"] and workers[0] not in two["pids"], res
    # its own workers are named; the server, the neighbour's worker, init and a pid that does not exist are not
    assert all(v == [NVML_SUCCESS, "gpuwire-worker"] for v in res["names"].values()), res["names"]
    assert res["others"] == {k: [NVML_ERROR_NOT_FOUND, None] for k in res["others"]}, res["others"]
