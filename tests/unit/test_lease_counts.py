"""Leases on "any N GPUs" (GPU_COUNT, `gpuwire run --gpus N`): the lease
manager's choice of GPUs and its order, the HELLO record, and the worker's
CUDA_VISIBLE_DEVICES for the granted set (visible.py)."""

import struct

import pytest

from gpuwire import protocol
from gpuwire.leases import LeaseManager, LeaseRefused
from gpuwire.visible import worker_env
from gpuwire.wire_generated import EXT_GPU_COUNT


def request(m: LeaseManager, owner: str, exclusive=False, gpu=None, count=None):
    return m.request(exclusive, gpu, 0, owner, count=count)


def test_count_takes_the_first_free_gpus_in_server_order():
    m = LeaseManager(4)
    x1 = request(m, "x1", exclusive=True, gpu=1)
    two = request(m, "two", exclusive=True, count=2)
    assert x1.granted and two.granted
    assert two.gpus == frozenset({0, 2})
    assert two.describe_gpus(4) == "GPU 0,2"
    one = request(m, "one", exclusive=True, count=1)
    assert one.granted and one.gpus == frozenset({3})


def test_shared_count_shares_with_shared_leases():
    m = LeaseManager(2)
    s = request(m, "s", gpu=0)
    both = request(m, "both", count=2)
    assert s.granted and both.granted and both.gpus == frozenset({0, 1})


def test_count_waits_until_enough_are_free_and_keeps_its_place():
    m = LeaseManager(3)
    x0 = request(m, "x0", exclusive=True, gpu=0)
    x1 = request(m, "x1", exclusive=True, gpu=1)
    want2 = request(m, "want2", exclusive=True, count=2)
    later = request(m, "later", exclusive=True, gpu=2)  # GPU 2 is free, but want2 came first and may want it
    assert not want2.granted and not later.granted
    assert want2.describe_gpus(3) == "any 2 GPUs"
    assert m.snapshot()["queued"][0]["gpus"] == [] and m.snapshot()["queued"][0]["count"] == 2
    m.release(x1)
    assert want2.granted and want2.gpus == frozenset({1, 2}) and not later.granted
    m.release(want2)
    assert later.granted
    assert x0.granted


def test_a_shared_request_behind_a_waiting_shared_count_is_not_held_up():
    m = LeaseManager(2)
    x = request(m, "x", exclusive=True, gpu=0)
    want2 = request(m, "want2", count=2)  # shared: waits for GPU 0
    s1 = request(m, "s1", gpu=1)            # shared with shared: no conflict, goes ahead
    assert not want2.granted and s1.granted
    m.release(x)
    assert want2.granted and want2.gpus == frozenset({0, 1})


def test_count_beyond_the_server_is_refused_naming_both_numbers():
    m = LeaseManager(2)
    with pytest.raises(LeaseRefused, match="3 GPUs asked for, but this server has 2"):
        request(m, "big", count=3)
    with pytest.raises(LeaseRefused, match="ask for 1 or more"):
        request(m, "none", count=0)
    with pytest.raises(LeaseRefused, match="not both"):
        request(m, "both", gpu=0, count=1)
    assert m.snapshot()["queued"] == [] and m.snapshot()["held"] == []


def test_the_hello_record_round_trips_and_is_critical():
    ext = protocol.pack_ext(gpu_count=2, exclusive=True)
    assert struct.pack("<HHI", EXT_GPU_COUNT, 4, 2) in ext
    assert EXT_GPU_COUNT & protocol.EXT_CRITICAL  # an older server refuses it, never leases all GPUs
    got = protocol.parse_ext(ext)
    assert got.gpu_count == 2 and got.exclusive and got.gpu is None
    with pytest.raises(protocol.ProtocolError, match="expected 4"):
        protocol.parse_ext(struct.pack("<HHH", EXT_GPU_COUNT, 2, 2))


@pytest.mark.parametrize("server_list, lease, client, want", [
    (None, {0, 2}, None, "0,2"),                 # the granted set, in server order
    (None, {2, 1}, "1", "2"),                    # the client's index counts in the granted set
    (None, {0, 2}, "2", "-1"),                   # beyond it: nothing
    ("5,6,7", {0, 2}, None, "5,7"),              # through the server's own list
    ("5,6,7", {1, 2}, "1,0", "7,6"),
    (None, {0, 1, 2}, None, None),               # every GPU: the server's environment
])
def test_worker_env_takes_the_granted_set(server_list, lease, client, want):
    server = {"CUDA_VISIBLE_DEVICES": server_list} if server_list else {}
    env = worker_env(server, frozenset(lease), 3, {"CUDA_VISIBLE_DEVICES": client} if client else {})
    got = None if env is None else env.get("CUDA_VISIBLE_DEVICES")
    assert got == (want if want is not None else server_list)


def test_worker_env_count_lease_ignores_the_clients_order():
    env = worker_env({}, frozenset({0, 1}), 3, {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"})
    assert env is not None and env["CUDA_VISIBLE_DEVICES"] == "0,1" and "CUDA_DEVICE_ORDER" not in env
