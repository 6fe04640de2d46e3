"""Issue 3: an asynchronous device-to-host copy into pinned memory does not wait:
it is posted, and its bytes land in the application's buffer before the
synchronize (or the event query that reports it done) returns. Many such copies
and one synchronize make no more round trips than one copy does."""

import json
import re
from pathlib import Path

import pytest
import sys

from conftest import explain, gw_run, start_server

SCRIPT = r"""
import ctypes, sys
cuda = ctypes.CDLL("libcuda.so.1")
n_copies, size = int(sys.argv[1]), int(sys.argv[2])
assert cuda.cuInit(0) == 0
dev, ctx, s, ev = ctypes.c_int(), ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_void_p()
assert cuda.cuDeviceGet(ctypes.byref(dev), 0) == 0
assert cuda.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) == 0
assert cuda.cuCtxSetCurrent(ctx) == 0
assert cuda.cuStreamCreate(ctypes.byref(s), 0) == 0
assert cuda.cuEventCreate(ctypes.byref(ev), 0) == 0
d = ctypes.c_uint64()
assert cuda.cuMemAlloc_v2(ctypes.byref(d), ctypes.c_size_t(size * n_copies)) == 0
host = ctypes.c_void_p()
assert cuda.cuMemAllocHost_v2(ctypes.byref(host), ctypes.c_size_t(size * n_copies)) == 0
words = size // 4
for i in range(n_copies):  # each copy's source holds its own value
    assert cuda.cuMemsetD32Async(ctypes.c_uint64(d.value + i * size), 0x1000 + i, ctypes.c_size_t(words), s) == 0
for i in range(n_copies):
    assert cuda.cuMemcpyDtoHAsync_v2(ctypes.c_void_p(host.value + i * size), ctypes.c_uint64(d.value + i * size),
                                     ctypes.c_size_t(size), s) == 0
assert cuda.cuEventRecord(ev, s) == 0
if "--query" in sys.argv:
    while cuda.cuEventQuery(ev) != 0:  # done means landed
        pass
else:
    assert cuda.cuStreamSynchronize(s) == 0
arr = (ctypes.c_uint32 * (words * n_copies)).from_address(host.value)
for i in range(n_copies):
    for k in (0, words // 2, words - 1):
        assert arr[i * words + k] == 0x1000 + i, (i, k, hex(arr[i * words + k]))
assert cuda.cuMemFreeHost(host) == 0
assert cuda.cuMemFree_v2(d) == 0
print("ok")
"""


def run_stats(server, tmp_path, *args, env=None):
    stats = tmp_path / f"s{'_'.join(args)}.json"
    r = gw_run([sys.executable, "-c", SCRIPT, *args], server=server.address, stats=stats, env=env)
    assert r.returncode == 0 and r.stdout.strip() == "ok", explain(r, server)
    return json.loads(stats.read_text())


def run(server, tmp_path, *args, env=None):
    return run_stats(server, tmp_path, *args, env=env)["round_trips"]


def test_copies_into_pinned_memory_land_by_the_synchronize(server, tmp_path):
    one = run(server, tmp_path, "1", "4096")
    many = run_stats(server, tmp_path, "200", "4096")
    assert many["round_trips"] == one, (one, many["round_trips"])  # 199 more copies, not one more round trip
    assert many["landings"] == {"copies": 200, "bytes": 200 * 4096, "waits": 0}, many["landings"]


def test_landed_before_the_event_query_says_done(server, tmp_path):
    run(server, tmp_path, "8", "65536", "--query")


def test_a_copy_larger_than_a_frame_lands_whole(server, tmp_path):
    run(server, tmp_path, "2", str(20 << 20))


def test_landings_can_be_turned_off(server, tmp_path):
    off = run(server, tmp_path, "50", "4096", env={"GPUWIRE_LANDINGS": "0"})
    on = run(server, tmp_path, "50", "4096")
    assert off >= on + 49, (off, on)  # without landings each copy waits for its bytes


ROUND = r"""
import ctypes
cuda = ctypes.CDLL("libcuda.so.1")
assert cuda.cuInit(0) == 0
dev, ctx, s = ctypes.c_int(), ctypes.c_void_p(), ctypes.c_void_p()
assert cuda.cuDeviceGet(ctypes.byref(dev), 0) == 0
assert cuda.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) == 0
assert cuda.cuCtxSetCurrent(ctx) == 0
assert cuda.cuStreamCreate(ctypes.byref(s), 0) == 0
n = 1 << 16
a, b = ctypes.c_uint64(), ctypes.c_uint64()
assert cuda.cuMemAlloc_v2(ctypes.byref(a), ctypes.c_size_t(n)) == 0
assert cuda.cuMemAlloc_v2(ctypes.byref(b), ctypes.c_size_t(n)) == 0
host = ctypes.c_void_p()
assert cuda.cuMemAllocHost_v2(ctypes.byref(host), ctypes.c_size_t(n)) == 0
ctypes.memset(host, 0x11, n)  # stale bytes the copy back must not see
assert cuda.cuMemsetD32Async(a, 0xCAFEF00D, ctypes.c_size_t(n // 4), s) == 0
# device -> pinned host -> device, in stream order, with no synchronize between
assert cuda.cuMemcpyDtoHAsync_v2(host, a, ctypes.c_size_t(n), s) == 0
assert cuda.cuMemcpyHtoDAsync_v2(b, host, ctypes.c_size_t(n), s) == 0
assert cuda.cuStreamSynchronize(s) == 0
out = (ctypes.c_uint32 * (n // 4))()
assert cuda.cuMemcpyDtoH_v2(out, b, ctypes.c_size_t(n)) == 0
assert all(v == 0xCAFEF00D for v in out[:: 997]), hex(out[0])
print("ok")
"""


def test_bytes_sent_on_from_pinned_memory_are_the_landed_ones(server, tmp_path):
    """A copy back to the device from the pinned buffer, in stream order after the
    copy that fills it, reads the filled bytes, as natively."""
    r = gw_run([sys.executable, "-c", ROUND], server=server.address)
    assert r.returncode == 0 and r.stdout.strip() == "ok", explain(r, server)


@pytest.fixture(scope="module")
def hostfn_server(tmp_path_factory):
    """A server whose workers complete deliveries by host functions queued
    behind each copy (GPUWIRE_DELIVERIES=hostfn; events are the default)."""
    srv = start_server(tmp_path_factory.mktemp("deliveries-hostfn") / "server.log",
                       env={"GPUWIRE_DELIVERIES": "hostfn"})
    yield srv
    srv.stop()


@pytest.mark.parametrize("args", [("200", "4096"), ("8", "65536", "--query"), ("2", str(20 << 20))])
def test_deliveries_completed_by_host_functions_land_the_same(hostfn_server, tmp_path, args):
    """The same programs against a server whose deliveries wait on host
    functions, not events: every byte lands by the synchronize or the query
    that says done, with no more round trips than with events."""
    st = run_stats(hostfn_server, tmp_path, *args)
    n = int(args[0])
    assert st["landings"]["copies"] == n and st["landings"]["waits"] == 0, st["landings"]


@pytest.mark.parametrize("which", ["default", "hostfn"])
def test_a_host_function_after_a_delivery_sees_its_bytes(server, hostfn_server, which):
    """A host function queued after a delivered copy: with events (the
    default) the worker's first host call waits for pending copies and sends
    them first, so the function reads the copied bytes (host_functions' graph
    and stream modes); with host functions they run in stream order."""
    from conftest import PROGRAMS_DIR, NOT_BUILT
    srv = server if which == "default" else hostfn_server
    exe = PROGRAMS_DIR / "host_functions_shared"
    if not exe.is_file():
        pytest.skip(NOT_BUILT)
    for mode in (["stream", "10"], ["graph"]):
        r = gw_run([str(exe), *mode], server=srv.address)
        assert r.returncode == 0, explain(r, srv)
        assert r.stdout.strip().splitlines()[-1].startswith("PASS host_functions"), explain(r, srv)


@pytest.mark.parametrize("spin", ["300", "lots"])
def test_a_spinning_reader_serves_the_same(tmp_path, spin):
    """GPUWIRE_READER_SPIN_US on the server: its reader polls the connection
    before sleeping. Deliveries and replies are the same, with the same round
    trips; a value that is not a number of microseconds is named in the
    worker's log and the default is used."""
    srv = start_server(tmp_path / "server.log", env={"GPUWIRE_READER_SPIN_US": spin})
    try:
        st = run_stats(srv, tmp_path, "200", "4096")
        assert st["landings"] == {"copies": 200, "bytes": 200 * 4096, "waits": 0}, st["landings"]
        run(srv, tmp_path, "8", "65536", "--query")
    finally:
        srv.stop()
    log = (tmp_path / "server.log").read_text(errors="replace")
    assert ("GPUWIRE_READER_SPIN_US=lots is not a number" in log) == (spin == "lots"), log[-2000:]


STAGED = Path(__file__).resolve().parents[1] / "gpu" / "cases" / "deliveries_large.py"


@pytest.mark.parametrize("how", ["default", "no-piece-buffers", "no-lanes", "small-on-lanes"])
def test_large_deliveries_are_staged_in_piece_buffers_and_sent_on_lanes(tmp_path, how):
    """A delivery of 1 MiB or more is copied on the server into the lanes'
    page-locked piece buffers, made before the program's copies, one part per
    buffer, and the rest into staging of its own; one of more than 4 MiB, for
    a client whose lanes are open, comes back on the lanes, a piece per lane
    in turn, and the client reads on past its marker only once every piece
    landed. Every byte lands at its offset, and a copy to the device queued
    before them on the stream, from page-locked memory through those
    buffers, still carries its own bytes. The first rounds may find no buffer
    ready (staged whole, as before). GPUWIRE_PIN_CHUNKS=0 on the server: no
    piece buffers; GPUWIRE_LANES=0 on the client: every byte on the session's
    connection; GPUWIRE_LANE_DELIVERY_MIN=65536: the 1 MiB copy too, split
    among the lanes. Copies of 0.5 MiB to the device, on the session's
    connection, are read into those buffers on the server too."""
    env = {"GPUWIRE_PIN_CHUNKS": "0"} if how == "no-piece-buffers" else {}
    srv = start_server(tmp_path / "server.log", env=env)
    client_env = {"GPUWIRE_CACHE": "0", **({"GPUWIRE_LANES": "0"} if how == "no-lanes" else {}),
                  **({"GPUWIRE_LANE_DELIVERY_MIN": "65536"} if how == "small-on-lanes" else {})}
    try:
        r = gw_run([sys.executable, str(STAGED), "6"], server=srv.address, env=client_env)
        assert r.returncode == 0 and r.stdout.strip() == "ok", explain(r, srv)
        srv.wait_for_log(r"session end", timeout=20)
        counts = re.findall(r"device-to-host copies delivered from page-locked piece buffers: (\d+); on the lanes: (\d+)",
                            srv.log_text())
    finally:
        srv.stop()
    frames = re.findall(r"host-to-device copies on the session's connection read into page-locked buffers: (\d+)",
                        srv.log_text())
    staged, on_lanes = (int(v) for v in counts[-1]) if counts else (0, 0)
    # 6 rounds of 8 copies of 0.5 MiB from ordinary memory (under the lanes' 1 MiB; without
    # lanes the large copies' 4 MiB frames as well)
    assert (int(frames[-1]) >= 1 if frames else False) if how != "no-piece-buffers" else not frames, frames
    assert int(frames[-1]) <= 48 if how in ("default", "small-on-lanes") else True, frames
    # 6 rounds of 4 copies, 3 of them over 4 MiB
    assert (1 <= staged <= 24) if how != "no-piece-buffers" else staged == 0, counts
    assert on_lanes == {"no-lanes": 0, "small-on-lanes": 24}.get(how, 18), counts
