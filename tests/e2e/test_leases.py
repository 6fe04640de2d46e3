"""Leases: the HELLO extension that asks for them, the lease manager's order,
and the server queueing, refusing, capping and ending sessions (in-process,
with a fake worker)."""

import json
import re
import struct
import subprocess
import time

import pytest

from conftest import GPUWIRE, gpuwire_env
from control_plane import control, dial, hello, log_message, next_frame, open_session  # noqa: F401 (fixture)
from gpuwire import protocol
from gpuwire.leases import LeaseManager, LeaseRefused, parse_size

# --- HELLO extension records --------------------------------------------------


def test_ext_round_trip():
    ext = protocol.pack_ext(exclusive=True, mem_cap=1 << 33, no_wait=True, gpu=3)
    frame = protocol.pack_hello(7, "h", "p", 0, ext=ext)
    hdr = protocol.unpack_header(frame[:16])
    assert hdr.flags == protocol.F_HELLO_EXT
    protocol.check_hello_header(hdr)
    got = protocol.parse_hello(frame[16:], hdr.flags)
    assert (got.host, got.prog, got.pid) == ("h", "p", 7)
    assert got.ext == protocol.HelloExt(exclusive=True, mem_cap=1 << 33, no_wait=True, gpu=3)


def test_ext_exact_bytes():
    # the layout docs/server.md gives the C client: u16 type, u16 len, value, little-endian
    assert protocol.pack_ext(exclusive=True) == bytes([1, 0, 1, 0, 1])
    assert protocol.pack_ext(mem_cap=0x0102030405060708) == bytes([2, 0, 8, 0, 8, 7, 6, 5, 4, 3, 2, 1])
    assert protocol.pack_ext(no_wait=True) == bytes([4, 0, 1, 0, 1])
    assert protocol.pack_ext(status_probe=True) == bytes([5, 0, 1, 0, 1])
    assert protocol.pack_ext(gpu=2) == bytes([6, 0, 4, 0, 2, 0, 0, 0])
    frame = protocol.pack_hello(1, "h", "p", 0, ext=protocol.pack_ext(exclusive=True))
    assert frame[4:8] == bytes([1, 0, 0, 1])  # op HELLO, flags 0x0100


def test_hello_without_ext_is_unchanged():
    frame = protocol.pack_hello(1, "h", "p", 0)
    hdr = protocol.unpack_header(frame[:16])
    assert hdr.flags == 0
    assert protocol.parse_hello(frame[16:], hdr.flags).ext == protocol.NO_EXT


@pytest.mark.parametrize("ext, words", [
    (b"\1\0", "inside a record header"),
    (b"\1\0\5\0\1", "says 5 bytes"),
    (protocol.pack_ext(exclusive=True) * 2, "twice"),
    (struct.pack("<HH", protocol.EXT_MEM_CAP, 4) + b"\0" * 4, "expected 8"),
    (struct.pack("<HHB", protocol.EXT_LEASE_MODE, 1, 2), "0 or 1"),
    (struct.pack("<HH", 0x8123, 0), "does not know"),
    (b"\0" * (protocol.HELLO_EXT_MAX + 1), "exceeds"),
])
def test_ext_rejects(ext, words):
    payload = protocol.pack_hello_payload(1, "h", "p", 0) + ext
    with pytest.raises(protocol.ProtocolError) as ei:
        protocol.parse_hello(payload, protocol.F_HELLO_EXT)
    assert words in ei.value.message


def test_ext_unknown_noncritical_skipped():
    ext = struct.pack("<HH", 0x0777, 3) + b"abc" + protocol.pack_ext(exclusive=True)
    got = protocol.parse_hello(protocol.pack_hello_payload(1, "h", "p", 0) + ext, protocol.F_HELLO_EXT)
    assert got.ext.exclusive and got.ext.unknown == (0x0777,)


def test_ext_needs_flag_and_flags_checked():
    payload = protocol.pack_hello_payload(1, "h", "p", 0) + protocol.pack_ext(exclusive=True)
    with pytest.raises(protocol.ProtocolError) as ei:
        protocol.parse_hello(payload)
    assert "HELLO_EXT flag" in ei.value.message
    with pytest.raises(protocol.ProtocolError):
        protocol.check_hello_header(protocol.Header(30, protocol.OP_HELLO, 0x4000, 0, 0))


def test_queued_frame():
    frame = protocol.pack_queued(2, 5, 12.345, "waiting")
    hdr = protocol.unpack_header(frame[:16])
    assert hdr.op == protocol.OP_QUEUED == 8
    assert frame[16:28] == struct.pack("<III", 2, 5, 12345)
    assert protocol.parse_queued(frame[16:]) == (2, 5, 12.345, "waiting")


# --- the lease manager ------------------------------------------------------------


def test_shared_leases_coexist():
    m = LeaseManager(1)
    a, b = m.request(False, None, 0, "a"), m.request(False, None, 0, "b")
    assert a.granted and b.granted


def test_fifo_order_and_no_overtaking():
    m = LeaseManager(1)
    s1 = m.request(False, None, 0, "s1")
    x1 = m.request(True, None, 0, "x1")
    s2 = m.request(False, None, 0, "s2")      # compatible with s1, but x1 came first
    x2 = m.request(True, None, 0, "x2")
    assert s1.granted and not x1.granted and not s2.granted and not x2.granted
    pos = m.position(s2)
    assert (pos.position, pos.waiting) == (2, 3) and "x1" in pos.holder
    assert "s1" in m.position(x1).holder
    m.release(s1)
    assert x1.granted and not s2.granted
    m.release(x1)
    assert s2.granted and not x2.granted
    m.release(s2)
    assert x2.granted
    assert m.granted_total == 4


def test_per_gpu_leases():
    m = LeaseManager(2)
    x0 = m.request(True, 0, 0, "x0")
    x1 = m.request(True, 1, 0, "x1")
    every = m.request(False, None, 0, "all")   # needs both GPUs
    assert x0.granted and x1.granted and not every.granted
    m.release(x0)
    assert not every.granted
    m.release(x1)
    assert every.granted
    with pytest.raises(LeaseRefused, match="GPU 2 does not exist"):
        m.request(False, 2, 0, "bad")


def test_withdrawn_request_and_wait():
    m = LeaseManager(1)
    x = m.request(True, None, 0, "x")
    y = m.request(True, None, 0, "y")
    t0 = time.monotonic()
    assert not m.wait(y, 0.1) and time.monotonic() - t0 >= 0.09
    m.release(y, refused=True)
    assert m.position(y) is None and m.refused_total == 1
    snap = m.snapshot()
    assert [h["owner"] for h in snap["held"]] == ["x"] and snap["queued"] == []
    m.release(x)
    assert m.snapshot()["held"] == []


@pytest.mark.parametrize("text, value", [("0", 0), ("1024", 1024), ("8G", 8 << 30), ("512MiB", 512 << 20),
                                         ("1.5K", 1536), ("2GB", 2 * 10**9)])
def test_parse_size(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "G", "8X", "-1", "1.2.3M"])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError):
        parse_size(text)


# --- the server with leases (fake worker) ------------------------------------------


def worker_info(log, pid):
    """The fake worker's report (args, CUDA_VISIBLE_DEVICES) for the client with this pid."""
    line = log.wait_for(rf"fakeworker .*pid={pid} ")
    return json.loads(log_message(line).split("fakeworker ", 1)[1])


def test_plain_hello_gets_shared_lease(control):
    srv, log = control()
    with open_session(srv, 11):
        line = log.wait_for(r"session start")
        assert "lease=shared" in line
        info = worker_info(log, 11)
        assert "--mem-cap" not in info["args"] and info["visible"] is None
        assert srv.leases.snapshot()["held"][0]["mode"] == "shared"
    log.wait_for(r"session end")
    deadline = time.monotonic() + 5
    while srv.leases.snapshot()["held"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert srv.leases.snapshot()["held"] == []


def test_mem_cap_reaches_worker(control):
    srv, log = control()
    with open_session(srv, 12, protocol.pack_ext(mem_cap=3 << 30)):
        info = worker_info(log, 12)
        assert info["args"]["--mem-cap"] == str(3 << 30)


def test_gpu_lease_sets_visible_devices(control, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    srv, log = control(device_count=2)
    with open_session(srv, 13, protocol.pack_ext(gpu=1)):
        assert worker_info(log, 13)["visible"] == "1"
    with dial(srv) as s:
        hello(s, 14, protocol.pack_ext(gpu=5))
        hdr, payload = next_frame(s)
        code, msg = protocol.parse_error(payload)
        assert code == protocol.ERR_REFUSED and "GPU 5 does not exist" in msg


def test_exclusive_queue_served_in_order(control):
    srv, log = control(queue_interval=0.2)
    holder = open_session(srv, 100, protocol.pack_ext(exclusive=True))
    waiters = []
    for pid in (101, 102, 103):
        s = dial(srv)
        hello(s, pid, protocol.pack_ext(exclusive=True), prog=f"waiter{pid}")
        hdr, payload = next_frame(s)
        assert hdr.op == protocol.OP_QUEUED, (hdr, payload)
        pos, waiting, waited, text = protocol.parse_queued(payload)
        assert pos == pid - 100 and waiting == pid - 100
        assert "waiting for an exclusive lease on GPU 0" in text and f"position {pos} of {waiting}" in text
        assert "held by testhost pid 100 prog (session 1), exclusive for" in text
        waiters.append(s)
    # progress frames keep coming while the client waits
    hdr, payload = next_frame(waiters[0])
    assert hdr.op == protocol.OP_QUEUED and protocol.parse_queued(payload)[2] > 0
    holder.close()
    for pid, s in zip((101, 102, 103), waiters):
        while True:
            hdr, payload = next_frame(s)
            if hdr.op != protocol.OP_QUEUED:
                break
        assert hdr.op == protocol.OP_HELLO_OK, (pid, hdr)
        # the next one is still waiting while this one holds the lease
        log.wait_for(rf"session start.* pid={pid}\b")
        s.close()
    starts = [int(m.group(1)) for ln in log.lines() for m in [re.search(r"session start.* pid=(\d+)\b", ln)] if m]
    assert starts == [100, 101, 102, 103]


def test_no_wait_refused_at_once(control):
    srv, log = control()
    holder = open_session(srv, 200, protocol.pack_ext(exclusive=True))
    with dial(srv) as s:
        t0 = time.monotonic()
        hello(s, 201, protocol.pack_ext(no_wait=True))
        hdr, payload = next_frame(s)
        assert time.monotonic() - t0 < 2
        code, msg = protocol.parse_error(payload)
        assert hdr.op == protocol.OP_ERROR and code == protocol.ERR_REFUSED
        assert "not available now" in msg and "pid 200" in msg and "--no-wait" in msg
        assert s.recv(10) == b""
    assert srv.snapshot()["leases"]["refused_total"] == 1
    holder.close()


def test_client_leaving_queue_is_forgotten(control):
    srv, log = control(queue_interval=0.2)
    holder = open_session(srv, 300, protocol.pack_ext(exclusive=True))
    s = dial(srv)
    hello(s, 301, protocol.pack_ext(exclusive=True))
    assert next_frame(s)[0].op == protocol.OP_QUEUED
    s.close()
    log.wait_for(r"client left the lease queue")
    assert srv.leases.snapshot()["queued"] == []
    holder.close()
    log.wait_for(r"session end")
    with open_session(srv, 302, protocol.pack_ext(exclusive=True)):
        pass


def test_idle_session_ended(control):
    srv, log = control(lease_idle_timeout=1.0)
    s = open_session(srv, 400, protocol.pack_ext(exclusive=True))
    with s:
        s.sendall(b"ping")
        assert s.recv(4) == b"ping"   # traffic: the fake worker echoes
        line = log.wait_for(r"ending idle session", timeout=10)
        assert "no traffic for" in line
        log.wait_for(r"session end.*killed by SIGTERM")
        assert s.recv(10) == b""
    assert srv.snapshot()["totals"]["idle_ended"] == 1
    with open_session(srv, 401, protocol.pack_ext(exclusive=True, no_wait=True)):
        pass  # the lease is free again


def test_shutdown_refuses_queued_client(control):
    srv, log = control()
    holder = open_session(srv, 500, protocol.pack_ext(exclusive=True))
    s = dial(srv)
    hello(s, 501, protocol.pack_ext(exclusive=True))
    assert next_frame(s)[0].op == protocol.OP_QUEUED
    srv.stop()
    while True:
        hdr, payload = next_frame(s)
        if hdr.op != protocol.OP_QUEUED:
            break
    assert hdr.op == protocol.OP_ERROR and "shutting down" in protocol.parse_error(payload)[1]
    s.close()
    holder.close()


# --- gpuwire run's lease options ---------------------------------------------------


def test_run_lease_options_reach_environment(tmp_path):
    tok = tmp_path / "tok"
    tok.write_text("x")
    code = ("import os; print(os.environ.get('GPUWIRE_LEASE'), os.environ.get('GPUWIRE_NO_WAIT'), "
            "os.environ.get('GPUWIRE_MEM_CAP'), os.environ.get('GPUWIRE_GPU'), os.environ.get('GPUWIRE_TOKEN_FILE'))")
    r = subprocess.run(GPUWIRE + ["run", "--exclusive", "--no-wait", "--mem-cap", "2G", "--gpu", "1",
                                  "--token-file", str(tok), "--", "python3", "-c", code],
                       capture_output=True, text=True, timeout=60, env=gpuwire_env())
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["exclusive", "1", str(2 << 30), "1", str(tok)]
    r = subprocess.run(GPUWIRE + ["run", "--mem-cap", "lots", "--", "true"], capture_output=True, text=True,
                       timeout=60, env=gpuwire_env())
    assert r.returncode == 2 and "bad size" in r.stderr
