"""One server with several GPUs (the stand-in with GPUWIRE_STANDIN_DEVICES=3):
every device reaches the client; CUDA_VISIBLE_DEVICES (index and UUID forms, a
bad entry ending the list) and CUDA_DEVICE_ORDER give what the same driver
gives a program run on the server itself; memory, contexts and streams per
device; peer access with the driver's error codes; peer copies with their bytes
checked and kept on the server; a lease on one GPU shows that GPU alone and
leaves the others free; `gpuwire smi` lists every GPU. tests/programs/
multi_device does the CUDA side (docs/multi-gpu.md).

The stand-in's three devices, in PCI order p0, p1, p2 (UUIDs ending 01, 02,
03): p1 is the slower one, so the driver's default order (FASTEST_FIRST) is
p0, p2, p1 and CUDA_DEVICE_ORDER=PCI_BUS_ID gives p0, p1, p2."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from conftest import GPUWIRE, PROGRAMS_DIR, explain, gpuwire_env, gw_python_client, gw_run, start_server
from gpuwire import paths

PROGRAM = PROGRAMS_DIR / "multi_device"
STANDIN = paths.NATIVE_DIR / "libgpuwire_standin.so"  # what ./scripts/setup builds (build/ has it only after make -C tests/standin)
DEVICES = 3
UUID = "GPU-67707577-6972-652d-7374-616e64696e{:02x}"  # physical device p: UUID(p + 1)
GIB = 1 << 30
DEV_LINE = re.compile(r"^DEV (\d+) uuid=(\S+) bus=(\S+) mem=(\d+) clock=(\d+) name=(.*)$", re.M)


def uuid(p: int) -> str:
    return UUID.format(p + 1)


CUDA_ENV = ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER")


@pytest.fixture(autouse=True)
def _no_cuda_env(monkeypatch):
    """Only what a test sets applies: not the test runner's own CUDA_VISIBLE_DEVICES."""
    for k in CUDA_ENV:
        monkeypatch.delenv(k, raising=False)


@pytest.fixture(scope="module")
def server3(tmp_path_factory):
    if not PROGRAM.is_file():
        pytest.skip("build/programs/multi_device is not built (make -C tests/programs)")
    with pytest.MonkeyPatch.context() as mp:  # the server's own list would narrow what it has
        for k in CUDA_ENV:
            mp.delenv(k, raising=False)
        srv = start_server(tmp_path_factory.mktemp("multi") / "server.log",
                           env={"GPUWIRE_STANDIN_DEVICES": str(DEVICES)})
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def native_dir(tmp_path_factory):
    """A directory whose libcuda.so.1 is the stand-in itself: the program run
    with no gpuwire in between, as a program on the server would run."""
    if not STANDIN.is_file():
        pytest.skip(f"{STANDIN} is not built (./scripts/setup)")
    d = tmp_path_factory.mktemp("native")
    os.symlink(STANDIN, d / "libcuda.so.1")
    return d


def clean_env(extra: dict[str, str | None]) -> dict[str, str]:
    return {k: v for k, v in extra.items() if v is not None}


def run_native(native_dir, mode: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    e = gpuwire_env({"GPUWIRE_STANDIN_DEVICES": str(DEVICES), "LD_LIBRARY_PATH": str(native_dir), **env})
    return subprocess.run([str(PROGRAM), mode], capture_output=True, text=True, timeout=60, env=e)


def run_remote(server, mode: str, env: dict[str, str], stats=None) -> subprocess.CompletedProcess:
    """The program through gpuwire run; `gpuwire run` options as their GPUWIRE_* variables in env."""
    return gw_run([str(PROGRAM), mode], server=server.address, env=env, stats=stats, timeout=60)


def devices(result) -> list[tuple[int, str, str, int, str]]:
    return [(int(m[1]), m[2], m[3], int(m[4]), m[6]) for m in DEV_LINE.finditer(result.stdout)]


def test_every_device_is_listed(server3, native_dir, tmp_path):
    stats = tmp_path / "stats.json"
    r = run_remote(server3, "list", {}, stats=stats)
    assert r.returncode == 0 and "PASS multi_device" in r.stdout, explain(r, server3)
    # HELLO_OK's device table carried all three: no query waited for the server
    assert stats_of(stats)["round_trips_by_function"] == {"cuInit": 1}, stats_of(stats)
    got = devices(r)
    # FASTEST_FIRST: p0, p2, p1; each with its own UUID, bus id, memory and name
    assert [(d[1], d[2], d[3]) for d in got] == [
        (uuid(0), "0000:00:00.0", 8 * GIB), (uuid(2), "0000:02:00.0", 6 * GIB), (uuid(1), "0000:01:00.0", 7 * GIB)]
    assert got[0][4] == "gpuwire CPU stand-in" and got[1][4] == "gpuwire CPU stand-in 2"
    native = run_native(native_dir, "list", {})
    assert native.returncode == 0, native.stdout + native.stderr
    assert devices(native) == got


# (CUDA_DEVICE_ORDER, CUDA_VISIBLE_DEVICES) -> the physical devices seen, in order
MASKS = [
    ("PCI_BUS_ID", None, [0, 1, 2]),
    ("FASTEST_FIRST", "1,2", [2, 1]),
    (None, "1", [2]),                                 # default order is FASTEST_FIRST
    ("PCI_BUS_ID", "2,0", [2, 0]),
    ("PCI_BUS_ID", "1,7,0", [1]),                     # 7 names no device: the list ends there
    ("PCI_BUS_ID", f"{uuid(2)},1", [2, 1]),           # UUID form, then an index
    ("PCI_BUS_ID", "GPU-6770,0", []),                 # a prefix every UUID shares names none: nothing visible
    ("PCI_BUS_ID", "1,1", [1]),                       # a device listed twice ends the list
]


@pytest.mark.parametrize("order, mask, want", MASKS)
def test_visibility_mask_maps_as_the_driver_does(server3, native_dir, order, mask, want):
    env = clean_env({"CUDA_DEVICE_ORDER": order, "CUDA_VISIBLE_DEVICES": mask})
    native = run_native(native_dir, "list", env)
    r = run_remote(server3, "list", env)
    if not want:  # the driver has no device: cuInit says so, natively and through gpuwire
        assert "CUDA_ERROR_NO_DEVICE" in native.stdout, native.stdout
        assert r.returncode != 0 and "CUDA_ERROR_NO_DEVICE" in r.stdout, explain(r, server3)
        return
    assert native.returncode == 0, native.stdout + native.stderr
    assert r.returncode == 0, explain(r, server3)
    assert [d[1] for d in devices(r)] == [uuid(p) for p in want], r.stdout
    assert devices(r) == devices(native)


def stats_of(path) -> dict:
    return json.loads(path.read_text())


def test_peer_access_and_copies(server3, native_dir, tmp_path):
    """Devices 0 and 1 (p0 and p2): per-device memory and pointer attributes,
    peer access errors, peer copies whose bytes never pass through the client."""
    stats = tmp_path / "stats.json"
    r = run_remote(server3, "peers", {}, stats=stats)
    assert r.returncode == 0 and "PASS multi_device" in r.stdout, explain(r, server3)
    assert "P2P can01=1 can10=1 rank=0 atomics=1" in r.stdout
    assert "MEM dev=0 total=%d used_by_alloc=262144" % (8 * GIB) in r.stdout  # the stand-in maps exactly
    assert "MEM dev=1 total=%d used_by_alloc=262144" % (6 * GIB) in r.stdout  # device 1 is p2: 6 GiB
    native = run_native(native_dir, "peers", {})
    assert native.returncode == 0 and native.stdout == r.stdout.replace("\r", ""), native.stdout
    # 256 KiB goes up once (the source data) and comes back three times (the checks);
    # three 256 KiB device-to-device copies between devices add nothing either way
    s = stats_of(stats)
    assert 262144 <= s["bytes_to_server"] < 262144 + 131072, s
    assert 3 * 262144 <= s["bytes_from_server"] < 4 * 262144, s
    # the good peer copies were posted (asynchronous to the host, as cuMemcpyDtoD); those the
    # client cannot vouch for (a range past an allocation, a NULL context) waited for their error
    calls, waits = s["by_function"], s["round_trips_by_function"]
    assert (calls["cuMemcpyPeer"], waits["cuMemcpyPeer"]) == (3, 2), s
    assert (calls["cuMemcpyPeerAsync"], waits["cuMemcpyPeerAsync"]) == (2, 1), s


@pytest.mark.parametrize("link", ["shared", "static"])
def test_runtime_program_uses_two_devices(server3, link, tmp_path):
    """The CUDA runtime's view (cudaSetDevice, cudaDeviceEnablePeerAccess, cudaMemcpyPeer(Async),
    cudaMemcpyDefault between devices), cudart linked both ways: peer copies stay on the server."""
    program = PROGRAMS_DIR / f"multi_device_rt_{link}"
    if not program.is_file():
        pytest.skip(f"{program.name} is not built (make -C tests/programs)")
    stats = tmp_path / "stats.json"
    r = gw_run([str(program)], server=server3.address, stats=stats, timeout=60)
    assert r.returncode == 0 and r.stdout.rstrip().endswith("PASS multi_device_rt"), explain(r, server3)
    assert "peer access 0->1 1, 1->0 1" in r.stdout
    s = stats_of(stats)
    # up: 2 x 2 inputs of 256 KiB; down: three 256 KiB checks; the three device-to-device copies add nothing
    assert 4 * 262144 <= s["bytes_to_server"] < 5 * 262144, s
    assert 3 * 262144 <= s["bytes_from_server"] < 4 * 262144, s


@pytest.mark.parametrize("gpu, phys", [(0, 0), (1, 2), (2, 1)])
def test_lease_on_one_gpu_shows_that_gpu(server3, gpu, phys):
    """--gpu N takes the server's device N (its driver's order) and shows it as device 0."""
    r = run_remote(server3, "list", {"GPUWIRE_GPU": str(gpu)})
    assert r.returncode == 0, explain(r, server3)
    assert [d[1] for d in devices(r)] == [uuid(phys)]


def test_lease_and_mask_together(server3):
    """A mask applies to the leased GPUs: index 0 is the leased one, index 1 is none."""
    r = run_remote(server3, "list", {"GPUWIRE_GPU": "2", "CUDA_VISIBLE_DEVICES": "0"})
    assert r.returncode == 0 and [d[1] for d in devices(r)] == [uuid(1)], explain(r, server3)
    r = run_remote(server3, "list", {"GPUWIRE_GPU": "2", "CUDA_VISIBLE_DEVICES": "1"})
    assert r.returncode != 0 and "CUDA_ERROR_NO_DEVICE" in r.stdout, explain(r, server3)
    # a UUID cannot reach a GPU outside the lease (nor, today, the leased one: docs/multi-gpu.md)
    r = run_remote(server3, "list", {"GPUWIRE_GPU": "2", "CUDA_VISIBLE_DEVICES": uuid(0)})
    assert r.returncode != 0 and uuid(0) not in r.stdout, explain(r, server3)


def test_lease_on_a_gpu_that_does_not_exist(server3):
    r = run_remote(server3, "list", {"GPUWIRE_GPU": str(DEVICES)})
    assert r.returncode != 0
    assert f"GPU {DEVICES} does not exist on this server (it has {DEVICES}" in r.stderr, explain(r, server3)


HOLD = "import ctypes, sys\nctypes.CDLL('libcuda.so.1').cuInit(0)\nprint('ready', flush=True)\nsys.stdin.readline()\n"


def test_exclusive_lease_is_per_gpu(server3):
    """An exclusive lease on GPU 1 leaves GPU 0 free (even exclusively) and
    keeps GPU 1, and "all GPUs", from anyone else who will not wait."""
    holder = gw_python_client(server3.address, HOLD, env={"GPUWIRE_GPU": "1", "GPUWIRE_LEASE": "exclusive"})
    try:
        free = run_remote(server3, "list", {"GPUWIRE_GPU": "0", "GPUWIRE_LEASE": "exclusive", "GPUWIRE_NO_WAIT": "1"})
        assert free.returncode == 0 and [d[1] for d in devices(free)] == [uuid(0)], explain(free, server3)
        for extra, what in (({"GPUWIRE_GPU": "1"}, "GPU 1"), ({}, "all GPUs")):
            busy = run_remote(server3, "list", {**extra, "GPUWIRE_NO_WAIT": "1"})
            assert busy.returncode != 0 and not devices(busy), explain(busy, server3)
            assert f"a shared lease on {what} is not available now" in busy.stderr, explain(busy, server3)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    again = run_remote(server3, "list", {"GPUWIRE_GPU": "1", "GPUWIRE_NO_WAIT": "1"})
    assert again.returncode == 0 and [d[1] for d in devices(again)] == [uuid(2)], explain(again, server3)


def test_smi_lists_every_gpu(server3):
    """NVML lists every GPU in PCI order; the CUDA part maps each to the ordinal programs get."""
    r = subprocess.run(GPUWIRE + ["smi", "--json", "--server", server3.address], capture_output=True, text=True,
                       timeout=60, env=gpuwire_env())
    assert r.returncode == 0, r.stdout + r.stderr
    info = json.loads(r.stdout)
    gpus = info["nvml"]["gpus"]
    assert [g["uuid"] for g in gpus] == [uuid(p) for p in range(DEVICES)]
    assert [g["bus_id"] for g in gpus] == [f"00000000:{p:02X}:00.0" for p in range(DEVICES)]
    assert [g["memory"]["total"] for g in gpus] == [8 * GIB, 7 * GIB, 6 * GIB]
    assert [d["uuid"] for d in info["cuda"]["devices"]] == [uuid(0), uuid(2), uuid(1)]
    table = subprocess.run(GPUWIRE + ["smi", "--server", server3.address], capture_output=True, text=True,
                           timeout=60, env=gpuwire_env())
    assert table.returncode == 0 and "gpuwire CPU stand-in 2" in table.stdout, table.stdout + table.stderr
    assert "3 device(s) visible" in table.stdout, table.stdout


def test_top_shows_every_gpu_and_per_gpu_leases(server3):
    """`gpuwire top --once`: a row per GPU, and a session's lease with the GPU it holds."""
    holder = gw_python_client(server3.address, HOLD, env={"GPUWIRE_GPU": "2", "GPUWIRE_LEASE": "exclusive"})
    try:
        r = subprocess.run(GPUWIRE + ["top", "--once", "--server", server3.address], capture_output=True, text=True,
                           timeout=60, env=gpuwire_env())
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert all(re.search(rf"^  GPU {i} ", r.stdout, re.M) for i in range(DEVICES)), r.stdout
    assert "Leases: 1 held (1 exclusive, 0 shared)" in r.stdout, r.stdout
    assert re.search(r"\bexclusive\s+2\s", r.stdout), r.stdout  # the session row: lease, then its GPUs
