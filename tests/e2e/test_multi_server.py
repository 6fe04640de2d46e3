"""Several servers in one client (GPUWIRE_SERVER=a,b; docs/multi-gpu.md "GPUs
of several servers"): two stand-in servers on loopback, a with two devices
and b with one (GPUWIRE_STANDIN_MACHINE=1: its UUIDs differ from a's, as two
machines' GPUs do), serve one program through `gpuwire run --server a,b`.
tests/programs/multi_server does the CUDA side: the joined device list (a's
first), CUDA_VISIBLE_DEVICES over it, a kernel on every device, peer copies
inside a, copies between a and b (sync, async, unified; sizes around the
8 MiB pieces; every byte checked), a call mixing both servers' handles
refused, and a server that dies mid-run failing only its own devices' calls.
tests/programs/link_host_calls runs host functions on either server's streams
(a polled flag, a graph host node, two threads at once).

a's devices in its order (FASTEST_FIRST): p0, p1 (UUIDs ...6e01, ...6e02);
b's: p0 of machine 1 (...6f01)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from conftest import GPUWIRE, PROGRAMS_DIR, explain, gpuwire_env, gw_python_client, gw_run, start_server

PROGRAM = PROGRAMS_DIR / "multi_server"
A0, A1 = "GPU-67707577-6972-652d-7374-616e64696e01", "GPU-67707577-6972-652d-7374-616e64696e02"
B0 = "GPU-67707577-6972-652d-7374-616e64696f01"
DEV = re.compile(r"^DEV (\d+) uuid=(\S+) bus=(\S+) mem=(\d+) name=(.*)$", re.M)
HOLD = "import ctypes, sys\nctypes.CDLL('libcuda.so.1').cuInit(0)\nprint('ready', flush=True)\nsys.stdin.readline()\n"
INVALID_HANDLE, DEVICE_UNAVAILABLE, PEER_ACCESS_UNSUPPORTED = 400, 46, 217


@pytest.fixture(autouse=True)
def _no_cuda_env(monkeypatch):
    for k in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER"):
        monkeypatch.delenv(k, raising=False)


def two_servers(tmp_path_factory, name: str):
    if not PROGRAM.is_file():
        pytest.skip("build/programs/multi_server is not built (make -C tests/programs)")
    d = tmp_path_factory.mktemp(name)
    with pytest.MonkeyPatch.context() as mp:
        for k in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER"):
            mp.delenv(k, raising=False)
        a = start_server(d / "a.log", env={"GPUWIRE_STANDIN_DEVICES": "2"})
        b = start_server(d / "b.log", env={"GPUWIRE_STANDIN_DEVICES": "1", "GPUWIRE_STANDIN_MACHINE": "1"})
    return a, b


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    a, b = two_servers(tmp_path_factory, "multi_server")
    yield a, b
    b.stop()
    a.stop()


def both(servers) -> str:
    return ",".join(s.address for s in servers)


def run(servers, mode: str, env: dict[str, str] | None = None, timeout: float = 120,
        stats=None) -> subprocess.CompletedProcess:
    return gw_run([str(PROGRAM), mode], server=both(servers), env=env or {}, timeout=timeout, stats=stats)


def uuids(r) -> list[str]:
    return [m[2] for m in DEV.finditer(r.stdout)]


def why(r, servers) -> str:
    return explain(r, servers[0]) + "\n--- server b ---\n" + "\n".join(servers[1].log_lines()[-20:])


def test_one_device_list_first_servers_first(servers):
    r = run(servers, "list")
    assert r.returncode == 0 and "PASS multi_server" in r.stdout, why(r, servers)
    got = [(int(m[1]), m[2], m[3], int(m[4]), m[5]) for m in DEV.finditer(r.stdout)]
    assert got == [(0, A0, "0000:00:00.0", 8 << 30, "gpuwire CPU stand-in"),
                   (1, A1, "0000:01:00.0", 7 << 30, "gpuwire CPU stand-in 1"),
                   (2, B0, "0000:00:00.0", 8 << 30, "gpuwire CPU stand-in")], r.stdout
    # the order the servers are named in is the order of their devices
    r = gw_run([str(PROGRAM), "list"], server=f"{servers[1].address},{servers[0].address}", timeout=60)
    assert r.returncode == 0 and uuids(r) == [B0, A0, A1], why(r, servers)


@pytest.mark.parametrize("mask, want", [
    ("2,0", [B0, A0]),            # indices count in the joined list
    ("1", [A1]),
    (f"{B0},1", [B0, A1]),        # a UUID names a device of any server
    ("GPU-67707577-6972-652d-7374-616e64696f", [B0]),  # a prefix naming one device
    ("0,5,2", [A0]),              # 5 names no device: the list ends there
    ("2,2", [B0]),                # a device listed twice ends the list
])
def test_visible_devices_mask_the_joined_list(servers, mask, want):
    r = run(servers, "list", {"CUDA_VISIBLE_DEVICES": mask})
    assert r.returncode == 0 and uuids(r) == want, why(r, servers)


def test_device_by_bus_id_across_servers(servers):
    """Both stand-ins have a device at bus 0: the earlier server's answers,
    unless the mask hides it; ordinals are the program's."""
    r = run(servers, "list")
    assert r.returncode == 0 and re.findall(r"^BYBUS (\d+) (\d+)$", r.stdout, re.M) == [
        ("0", "0"), ("1", "1"), ("2", "0")], why(r, servers)
    r = run(servers, "list", {"CUDA_VISIBLE_DEVICES": "2,1"})
    assert r.returncode == 0 and re.findall(r"^BYBUS (\d+) (\d+)$", r.stdout, re.M) == [
        ("0", "0"), ("1", "1")], why(r, servers)


def test_a_mask_leaving_nothing_is_no_device(servers):
    r = run(servers, "list", {"CUDA_VISIBLE_DEVICES": "GPU-6770"})  # every UUID shares it: names none
    assert r.returncode != 0 and "CUDA_ERROR_NO_DEVICE" in r.stdout, why(r, servers)
    assert "leaves no device of the 2 gpuwire servers" in r.stderr, why(r, servers)


def test_leases_apply_on_each_server(servers):
    """GPUWIRE_GPUS=1 leases one GPU on each server: with a's GPU 0 held
    exclusively by another client, a gives its GPU 1."""
    holder = gw_python_client(servers[0].address, HOLD, env={"GPUWIRE_GPU": "0", "GPUWIRE_LEASE": "exclusive"})
    try:
        r = run(servers, "list", {"GPUWIRE_GPUS": "1", "GPUWIRE_LEASE": "exclusive", "GPUWIRE_NO_WAIT": "1"})
        assert r.returncode == 0 and uuids(r) == [A1, B0], why(r, servers)
        busy = run(servers, "list", {"GPUWIRE_GPU": "0", "GPUWIRE_NO_WAIT": "1"})
        assert busy.returncode != 0 and not uuids(busy), why(busy, servers)
        assert "a shared lease on GPU 0 is not available now" in busy.stderr, why(busy, servers)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


def test_work_on_every_server_and_copies_between_them(servers, tmp_path):
    stats = tmp_path / "stats.json"
    # no lanes, no content cache: every byte on the sessions' own connections, counted
    r = run(servers, "work", {"GPUWIRE_LANES": "0", "GPUWIRE_CACHE": "0"}, stats=stats)
    assert r.returncode == 0 and r.stdout.rstrip().endswith("PASS multi_server"), why(r, servers)
    assert all(f"KERNEL dev={d} ok" in r.stdout for d in range(3)), r.stdout
    for size in (1, 4097, (8 << 20) - 1, 8 << 20, (8 << 20) + 1, (20 << 20) + 12345):
        assert f"CROSS sync size={size} ok" in r.stdout, r.stdout
    assert f"CROSS async size={(17 << 20) + 3} ok" in r.stdout and "CROSS unified ok" in r.stdout, r.stdout
    assert "CROSS dtod ok" in r.stdout, r.stdout
    # every copy between the servers passed through the client: its bytes came
    # from one server and went to the other, besides the program's own checks,
    # which read each copy's bytes back once more
    mib = 1 << 20
    sizes = (1, 4097, 8 * mib - 1, 8 * mib, 8 * mib + 1, 20 * mib + 12345)
    across = 2 * sum(sizes) + (17 * mib + 3) + 9 * mib + (3 * mib + 5)
    s = json.loads(stats.read_text())
    assert s["bytes_from_server"] >= 2 * across, (s["bytes_from_server"], across)
    assert s["bytes_to_server"] >= 2 * across, (s["bytes_to_server"], across)
    assert "WAIT across query=0" in r.stdout, r.stdout  # a's stream waited for b's event: it is done
    assert f"PEER a-b can=0 enable={PEER_ACCESS_UNSUPPORTED}" in r.stdout, r.stdout
    # b's memory copied on a's stream: refused, sent to neither
    assert f"MIXED {INVALID_HANDLE}" in r.stdout and "belong to two different gpuwire servers" in r.stderr, r.stderr


@pytest.mark.parametrize("mask", ["2,0", "1,2"])
@pytest.mark.parametrize("program", ["multi_device", "multi_device_rt_shared"])
def test_one_server_programs_across_two_servers(servers, mask, program):
    """The programs written for two GPUs of one server (test_multi_device.py),
    with their devices 0 and 1 on two servers: contexts, memory, kernels,
    pointer attributes, events across devices and peer copies (staged through
    the client here), peer access reported unsupported, as between two GPUs
    without a link. The runtime's kernels come from a library loaded on every
    server."""
    path = PROGRAMS_DIR / program
    if not path.is_file():
        pytest.skip(f"{path} is not built (make -C tests/programs)")
    args = [str(path), "peers"] if program == "multi_device" else [str(path)]
    r = gw_run(args, server=both(servers), env={"CUDA_VISIBLE_DEVICES": mask}, timeout=120)
    assert r.returncode == 0 and "PASS multi_device" in r.stdout, why(r, servers)
    assert re.search(r"can01=0|peer access 0->1 0", r.stdout), r.stdout


def test_two_threads_on_two_servers_at_once(servers):
    """A thread per server, each running kernels and copying its results to
    the other server, at the same time: the links and the first server's
    stream serve them side by side."""
    r = run(servers, "threads")
    assert r.returncode == 0 and "THREADS ok" in r.stdout, why(r, servers)


LATER_SERVER_PROGRAMS = [["driver_api"], ["arrays"], ["graph_build"], ["kernel_attrs"], ["memcpy_kinds_shared"],
                         ["streams_events_shared"], ["multi_module_shared"],
                         # graph memcpy nodes reading and writing host memory, copies delivered into it
                         ["graph_host_sources_shared", "--standin"], ["graph_host_copies_shared"],
                         ["async_pipeline_shared"], ["sync_fences_shared", "decode", "20"],
                         ["device_printf_shared"], ["vector_add_shared"], ["host_functions_shared"],
                         # mapped and managed host memory: the range's pages to and from b's worker;
                         # page-locked memory a kernel finds in its arguments, mapped there
                         ["mapped_memory_shared"], ["pinned_kernel_args_shared"],
                         # host functions and stream callbacks (in order, between kernels and copies),
                         # one waited for on the program's own condition, a graph's host node
                         ["host_functions_shared", "stream", "10"], ["host_functions_shared", "wait"],
                         ["link_host_calls", "graph", "0"], ["link_host_calls", "poll", "0"]]


@pytest.mark.parametrize("args", LATER_SERVER_PROGRAMS, ids=lambda a: a[0])
def test_programs_on_the_second_server_alone(servers, args):
    """CUDA_VISIBLE_DEVICES=2: the program sees server b's device only, and
    everything it does goes to b (arrays, graphs, textures, modules, the
    runtime's libraries, device printf, host functions), through b's link."""
    path = PROGRAMS_DIR / args[0]
    if not path.is_file():
        pytest.skip(f"{path} is not built (make -C tests/programs)")
    r = gw_run([str(path), *args[1:]], server=both(servers), env={"CUDA_VISIBLE_DEVICES": "2"}, timeout=120)
    assert r.returncode == 0 and re.search(r"^PASS ", r.stdout, re.M), why(r, servers)


HOST_CALLS = PROGRAMS_DIR / "link_host_calls"
PROMPT_MS = 300  # a host function's answer on a link: the drainer used to look once a second


def host_calls(servers, *args) -> subprocess.CompletedProcess:
    if not HOST_CALLS.is_file():
        pytest.skip(f"{HOST_CALLS} is not built (make -C tests/programs)")
    r = gw_run([str(HOST_CALLS), *args], server=both(servers), timeout=120)
    assert r.returncode == 0 and r.stdout.rstrip().endswith("PASS link_host_calls"), why(r, servers)
    return r


def test_host_function_on_the_second_server_wakes_a_polling_program_at_once(servers):
    """A host function (or stream callback, or graph host node) on b's stream
    sets a flag the program polls, with no CUDA call meanwhile: nobody waits
    on b's link, so the links' drainer must read the worker's HOST_CALL as it
    comes (it used to look once a second)."""
    r = host_calls(servers, "poll", "2")
    ms = [float(m) for m in re.findall(r"^POLL dev=2 round=\d ms=([\d.]+)$", r.stdout, re.M)]
    assert len(ms) == 5 and max(ms) < PROMPT_MS, r.stdout
    r = host_calls(servers, "graph", "2")
    ms = [float(m) for m in re.findall(r"^GRAPHPOLL dev=2 ms=([\d.]+)$", r.stdout, re.M)]
    assert len(ms) == 1 and ms[0] < PROMPT_MS and "GRAPH dev=2 runs=6" in r.stdout, r.stdout


def test_host_function_on_the_first_server_wakes_a_polling_program_every_round(servers):
    """The same on a's stream, five rounds: the callback thread reads a's
    stream itself while a call may come, also once it had run the previous
    round's (it used to wait for the drainer's next look from round 2 on)."""
    r = host_calls(servers, "poll", "0")
    ms = [float(m) for m in re.findall(r"^POLL dev=0 round=\d ms=([\d.]+)$", r.stdout, re.M)]
    assert len(ms) == 5 and max(ms) < PROMPT_MS, r.stdout


def test_host_functions_on_both_servers_from_two_threads(servers):
    """A thread on a's device 0 and one on b's device 2, each with 40 host
    functions between kernels and some synchronizes: one callback thread runs
    both servers' calls and answers each on the server that asked (a
    synchronize on b holds b's link for its reply while b's stream waits for
    a host function's answer)."""
    r = host_calls(servers, "two", "0", "2")
    assert "TWO ok ran=40,40" in r.stdout, r.stdout


def test_process_ending_inside_a_host_function_of_the_second_server(servers):
    """The process ends inside a host function on b with more queued behind it:
    b's worker lets its waiting trampoline go, and b serves the next client."""
    prog = PROGRAMS_DIR / "host_functions_shared"
    if not prog.is_file():
        pytest.skip(f"{prog} is not built (make -C tests/programs)")
    only_b = {"CUDA_VISIBLE_DEVICES": "2"}
    r = gw_run([str(prog), "die"], server=both(servers), env=only_b, timeout=60)
    assert "inside a host function, ending the process" in r.stdout and "PASS" not in r.stdout, why(r, servers)
    servers[1].wait_for_log("not answered: the session is over", timeout=15)
    r = gw_run([str(prog), "stream", "5"], server=both(servers), env=only_b, timeout=60)
    assert r.returncode == 0 and "PASS host_functions" in r.stdout, why(r, servers)


FORK = """
import ctypes, os, sys
cu = ctypes.CDLL("libcuda.so.1")
def use(dev):
    ctx, d, p = ctypes.c_void_p(), ctypes.c_int(), ctypes.c_uint64()
    back, data = ctypes.create_string_buffer(4096), ctypes.create_string_buffer(bytes(range(256)) * 16)
    for r in (cu.cuDeviceGet(ctypes.byref(d), dev), cu.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), d),
              cu.cuCtxSetCurrent(ctx), cu.cuMemAlloc_v2(ctypes.byref(p), ctypes.c_size_t(4096)),
              cu.cuMemcpyHtoD_v2(p, data, ctypes.c_size_t(4096)), cu.cuMemcpyDtoH_v2(back, p, ctypes.c_size_t(4096))):
        if r:
            sys.exit(f"device {dev}: {r}")
    assert back.raw == data.raw[:4096]
last = int(sys.argv[1])
assert cu.cuInit(0) == 0
use(last)
pid = os.fork()
if pid == 0:
    assert cu.cuInit(0) == 0
    use(last); use(0)
    os._exit(0)
_, status = os.waitpid(pid, 0)
use(last); use(1)
print("fork ok", status)
"""


@pytest.mark.parametrize("several", [True, False], ids=["two servers", "one server"])
def test_a_forked_child_opens_its_own_sessions(servers, several):
    """After fork the child starts sessions of its own with every server and
    keeps its parent's primary contexts (one server's workers name them alike:
    worker/core/handles.c), with two servers as with one."""
    server = both(servers) if several else servers[0].address
    r = gw_run([sys.executable, "-c", FORK, "2" if several else "1"], server=server, timeout=120)
    assert r.returncode == 0 and "fork ok 0" in r.stdout, why(r, servers)


def test_one_gpu_through_two_servers_is_refused(servers):
    """The same server twice: every GPU would show twice, and its two
    sessions' workers would name their objects alike."""
    r = gw_run([str(PROGRAM), "list"], server=f"{servers[1].address},{servers[1].address}", timeout=60)
    assert r.returncode != 0 and "CUDA_ERROR_NO_DEVICE" in r.stdout, why(r, servers)
    assert f"servers 1 and 2 both show the GPU {B0}" in r.stderr, r.stderr


def test_bad_server_lists_are_refused_before_starting(servers):
    for spec, words in ((f"{servers[0].address},,{servers[1].address}", "is not valid"),
                        (",".join([servers[0].address] * 9), "at most 8 servers")):
        r = subprocess.run(GPUWIRE + ["run", "--server", spec, "--", str(PROGRAM), "list"], capture_output=True,
                           text=True, timeout=60, env=gpuwire_env())
        assert r.returncode == 2 and words in r.stderr, (spec, r.stderr)


def test_a_server_that_dies_fails_its_own_devices_only(tmp_path_factory):
    """Server b's worker killed while the program holds memory there: its
    calls fail with CUDA_ERROR_DEVICE_UNAVAILABLE (no hang), server a's go on."""
    a, b = two_servers(tmp_path_factory, "dies")
    try:
        proc = subprocess.Popen(GPUWIRE + ["run", "--server", f"{a.address},{b.address}", "--", str(PROGRAM), "hold"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=gpuwire_env())
        assert proc.stdout.readline().strip() == "ready"
        workers = subprocess.run(["pgrep", "-P", str(b.proc.pid)], capture_output=True, text=True).stdout.split()
        assert workers, "server b has no worker"
        for pid in workers:
            subprocess.run(["kill", "-9", pid])
        out, err = proc.communicate("go\n", timeout=60)
        assert proc.returncode == 0, out + err
        # the switch to b's context fails too once the link's loss is seen (its drainer may read
        # the reset first); then the context stays a's, whose synchronize succeeds
        assert (f"SET 0 LOST {DEVICE_UNAVAILABLE} {DEVICE_UNAVAILABLE}" in out or
                f"SET {DEVICE_UNAVAILABLE} LOST {DEVICE_UNAVAILABLE} 0" in out), out + err
        assert "STILL 0" in out, out + err
        assert "lost the connection to the gpuwire server" in err, err
    finally:
        b.stop()
        a.stop()


def test_async_copies_into_pinned_memory_on_b_are_delivered(servers, tmp_path):
    """sync_fences decode on b: each token's result, copied asynchronously into
    pinned memory, is posted and its bytes delivered on b's link before the
    synchronize's reply: no round trip of its own (every synchronize still
    waits with several servers, docs/multi-gpu.md), every value checked by
    the program."""
    path = PROGRAMS_DIR / "sync_fences_shared"
    if not path.is_file():
        pytest.skip(f"{path} is not built (make -C tests/programs)")
    stats = tmp_path / "stats.json"
    r = gw_run([str(path), "decode", "30"], server=both(servers), stats=stats, env={"CUDA_VISIBLE_DEVICES": "2"},
               timeout=120)
    assert r.returncode == 0 and "30 tokens decoded, every value as expected" in r.stdout, why(r, servers)
    st = json.loads(stats.read_text())
    assert st["landings"]["copies"] == 30 and st["landings"]["bytes"] == 30 * 1024, st["landings"]
    assert not any(k.startswith("cuMemcpyDtoH") for k in st["round_trips_by_function"]), st["round_trips_by_function"]


def fence_run(servers, tmp_path, mode: str, tokens: int | None, visible: str) -> dict:
    path = PROGRAMS_DIR / "sync_fences_shared"
    if not path.is_file():
        pytest.skip(f"{path} is not built (make -C tests/programs)")
    stats = tmp_path / f"{mode}-{tokens}-{visible}.json"
    args = [str(path), mode] + ([str(tokens)] if tokens else [])
    r = gw_run(args, server=both(servers), stats=stats, env={"CUDA_VISIBLE_DEVICES": visible}, timeout=120)
    assert r.returncode == 0 and r.stdout.strip().splitlines()[-1] == f"PASS sync_fences {mode}", why(r, servers)
    return json.loads(stats.read_text())


@pytest.mark.parametrize("visible", ["0", "2"], ids=["server_a", "server_b"])
def test_stream_fences_hold_per_server(servers, tmp_path, visible):
    """With two servers, a synchronize with nothing to report is posted on either
    one (each server keeps its own posted failures, so the thread's record of
    them is one per server): a decode-shaped token costs one round trip on a
    and on b, as with one server (it used to cost eight); a kernel's fault on
    b is still reported at its stream's synchronize."""
    few, many = (fence_run(servers, tmp_path, "decode", n, visible) for n in (4, 12))
    assert (many["round_trips"] - few["round_trips"]) / 8 == 1.0, (few["round_trips"], many["round_trips"])
    fence_run(servers, tmp_path, "fault", None, visible)
    # the per-thread stream waits behind unfinished legacy work, on b as on a
    few, many = (fence_run(servers, tmp_path, "blocking", n, visible) for n in (4, 12))
    rt = lambda s: s["round_trips_by_function"].get("cuStreamSynchronize", 0)  # noqa: E731
    assert (rt(many) - rt(few)) / 8 == 2.0, (few["round_trips_by_function"], many["round_trips_by_function"])


def test_mapped_ranges_of_two_servers_in_one_process(servers):
    """Mapped allocations made with a's device current and with b's, used by
    kernels of each in turn and rewritten by the host between rounds: each
    range's pages go to and come from its own server's worker (state/mapped.c)."""
    path = PROGRAMS_DIR / "mapped_memory_shared"
    if not path.is_file():
        pytest.skip(f"{path} is not built (make -C tests/programs)")
    r = gw_run([str(path), "two", "2"], server=both(servers), timeout=120)
    assert r.returncode == 0 and "3 rounds each, every element checked" in r.stdout, why(r, servers)
    assert r.stdout.rstrip().endswith("PASS mapped_memory"), why(r, servers)


def test_posted_calls_on_b_leave_in_batches(servers, tmp_path):
    """A decode-shaped token on b posts about fifteen calls (input copies,
    synchronizes with nothing to report, the launch, the result's delivery):
    they collect in b's link batch and leave with the token's waited
    synchronize, as on server a, not in a write each (GPUWIRE_FLUSH_US=0
    shows the write-each count)."""
    def writes(tokens: int, env: dict[str, str]) -> int:
        return fence_run_env(servers, tmp_path, tokens, env)["batches_sent"]
    batched = (writes(30, {}) - writes(10, {})) / 20
    one_each = (writes(30, {"GPUWIRE_FLUSH_US": "0"}) - writes(10, {"GPUWIRE_FLUSH_US": "0"})) / 20
    assert one_each >= 10 and batched <= 4, (batched, one_each)


def fence_run_env(servers, tmp_path, tokens: int, env: dict[str, str]) -> dict:
    path = PROGRAMS_DIR / "sync_fences_shared"
    if not path.is_file():
        pytest.skip(f"{path} is not built (make -C tests/programs)")
    stats = tmp_path / f"decode-{tokens}-{len(env)}.json"
    r = gw_run([str(path), "decode", str(tokens)], server=both(servers), stats=stats,
               env={"CUDA_VISIBLE_DEVICES": "2", **env}, timeout=120)
    assert r.returncode == 0 and "PASS sync_fences decode" in r.stdout, why(r, servers)
    return json.loads(stats.read_text())


VMM_LOCATIONS = r"""
import ctypes, sys
cu = ctypes.CDLL("libcuda.so.1")
class Loc(ctypes.Structure): _fields_ = [("type", ctypes.c_int), ("id", ctypes.c_int)]
class Flags(ctypes.Structure): _fields_ = [("compressionType", ctypes.c_ubyte), ("gpuDirectRDMACapable", ctypes.c_ubyte), ("usage", ctypes.c_ushort), ("reserved", ctypes.c_ubyte * 4)]
class Prop(ctypes.Structure): _fields_ = [("type", ctypes.c_int), ("requestedHandleTypes", ctypes.c_int), ("location", Loc), ("win32HandleMetaData", ctypes.c_void_p), ("allocFlags", Flags)]
class Access(ctypes.Structure): _fields_ = [("location", Loc), ("flags", ctypes.c_int)]
assert cu.cuInit(0) == 0
dev = int(sys.argv[1])
ctx, d = ctypes.c_void_p(), ctypes.c_int()
cu.cuDeviceGet(ctypes.byref(d), dev); print("retain", cu.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), d)); cu.cuCtxSetCurrent(ctx)
p = Prop(); p.type = 1; p.location.type = 1; p.location.id = dev
g = ctypes.c_size_t()
print("gran", cu.cuMemGetAllocationGranularity(ctypes.byref(g), ctypes.byref(p), 0), g.value)
h = ctypes.c_uint64()
print("create", cu.cuMemCreate(ctypes.byref(h), ctypes.c_size_t(2 << 20), ctypes.byref(p), ctypes.c_ulonglong(0)))
va = ctypes.c_uint64()
print("reserve", cu.cuMemAddressReserve(ctypes.byref(va), ctypes.c_size_t(2 << 20), ctypes.c_size_t(0), ctypes.c_uint64(0), ctypes.c_ulonglong(0)))
print("map", cu.cuMemMap(va, ctypes.c_size_t(2 << 20), ctypes.c_size_t(0), h, ctypes.c_ulonglong(0)))
a = Access(); a.location.type = 1; a.location.id = dev; a.flags = 3
print("access", cu.cuMemSetAccess(va, ctypes.c_size_t(2 << 20), ctypes.byref(a), ctypes.c_size_t(1)))
buf = ctypes.create_string_buffer(b"x" * 4096)
print("copy", cu.cuMemcpyHtoD_v2(va, buf, ctypes.c_size_t(4096)))
pr = Prop()
print("props", cu.cuMemGetAllocationPropertiesFromHandle(ctypes.byref(pr), h), pr.location.id)
pool = ctypes.c_void_p()
class PoolProps(ctypes.Structure): _fields_ = [("allocType", ctypes.c_int), ("handleTypes", ctypes.c_int), ("location", Loc), ("win32SecurityAttributes", ctypes.c_void_p), ("maxSize", ctypes.c_size_t), ("usage", ctypes.c_ushort), ("reserved", ctypes.c_ubyte * 54)]
pp = PoolProps(); pp.allocType = 1; pp.location.type = 1; pp.location.id = dev
print("poolcreate", cu.cuMemPoolCreate(ctypes.byref(pool), ctypes.byref(pp)))
both = (Access * 2)(); both[0].location.type = both[1].location.type = 1; both[0].location.id = 0; both[1].location.id = dev
both[0].flags = both[1].flags = 3
print("access_two_servers", cu.cuMemSetAccess(va, ctypes.c_size_t(2 << 20), both, ctypes.c_size_t(2)))
g, node = ctypes.c_void_p(), ctypes.c_void_p()
print("graphcreate", cu.cuGraphCreate(ctypes.byref(g), 0))
class AllocNode(ctypes.Structure): _fields_ = [("poolProps", PoolProps), ("accessDescs", ctypes.c_void_p), ("accessDescCount", ctypes.c_size_t), ("bytesize", ctypes.c_size_t), ("dptr", ctypes.c_uint64)]
an = AllocNode(); an.poolProps.allocType = 1; an.poolProps.location.type = 1; an.poolProps.location.id = dev; an.bytesize = 1 << 20
print("allocnode", cu.cuGraphAddMemAllocNode(ctypes.byref(node), g, None, ctypes.c_size_t(0), ctypes.byref(an)))
back = AllocNode()
print("allocnodeparams", cu.cuGraphMemAllocNodeGetParams(node, ctypes.byref(back)), back.poolProps.location.id)
ctx0, d0 = ctypes.c_void_p(), ctypes.c_int()
cu.cuDeviceGet(ctypes.byref(d0), 0); cu.cuDevicePrimaryCtxRetain(ctypes.byref(ctx0), d0); cu.cuCtxSetCurrent(ctx0)
pr = Prop()
print("props_from_a", cu.cuMemGetAllocationPropertiesFromHandle(ctypes.byref(pr), h), pr.location.id)
h2 = ctypes.c_uint64()
rc = cu.cuMemRetainAllocationHandle(ctypes.byref(h2), ctypes.c_void_p(va.value))
print("retain_from_a", rc, "same" if h2.value == h.value else "other")
print("release_retained", cu.cuMemRelease(h2))
print("unmap", cu.cuMemUnmap(va, ctypes.c_size_t(2 << 20)))
print("release_from_a", cu.cuMemRelease(h))
"""


@pytest.mark.parametrize("dev", [1, 2])
def test_memory_locations_name_the_clients_devices(servers, dev):
    """The virtual memory and pool calls' CUmemLocation (granularity,
    cuMemCreate, cuMemSetAccess, cuMemPoolCreate, the properties of a handle,
    a graph's memory allocation node) name the client's ordinal: for b's device 2 the call goes to b with b's
    own ordinal, and the answer names 2 again (b answered INVALID_DEVICE for
    an ordinal it does not have); an access list naming devices of a and b
    is refused with its line. Then, with device 0's context current, the
    allocation's handle still reaches the server that made it (its
    properties, a retain by address, unmap, release)."""
    r = gw_run([sys.executable, "-c", VMM_LOCATIONS, str(dev)], server=both(servers), timeout=120)
    assert r.returncode == 0, why(r, servers)
    got = dict(ln.split(" ", 1) for ln in r.stdout.splitlines())
    for step in ("retain", "create", "reserve", "map", "access", "copy", "poolcreate"):
        assert got[step] == "0", (step, r.stdout)
    assert got["gran"].split() == ["0", str(2 << 20)] and got["props"].split() == ["0", str(dev)], r.stdout
    # a graph's memory allocation node: its pool's device, and the device its parameters name (the
    # stand-in's memory nodes take a server's device 0 only: b's, the client's 2)
    if dev == 2:
        assert got["graphcreate"] == "0" and got["allocnode"] == "0", r.stdout
        assert got["allocnodeparams"].split() == ["0", str(dev)], r.stdout
    # the handle, with device 0's context (server a) current: its calls go to the server that made it
    assert got["props_from_a"].split() == ["0", str(dev)], r.stdout
    assert got["retain_from_a"] == "0 same" and got["release_retained"] == "0", r.stdout
    assert got["unmap"] == "0" and got["release_from_a"] == "0", r.stdout
    if dev == 2:
        assert got["access_two_servers"] == str(INVALID_HANDLE), r.stdout
        assert "cuMemSetAccess: its arguments belong to two different gpuwire servers" in r.stderr, r.stderr
    else:
        assert got["access_two_servers"] == "0", r.stdout
