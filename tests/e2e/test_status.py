"""`gpuwire status` (the status probe: no worker, JSON answer, echo frames for
RTT and bandwidth) and `gpuwire top` (--once text snapshot; the terminal UI's
missing-dependency message)."""

import importlib.util
import json
import struct
import subprocess

import pytest

from conftest import GPUWIRE, free_port, gpuwire_env, start_server
from control_plane import control, dial, hello, next_frame, open_session  # noqa: F401 (fixture)
from gpuwire import protocol, status, top


def gw(*args, timeout=60, env=None):
    return subprocess.run(GPUWIRE + list(args), capture_output=True, text=True, timeout=timeout,
                          env=gpuwire_env(env))


def test_probe_starts_no_worker(control):
    srv, log = control()
    holder = open_session(srv, 900, protocol.pack_ext(exclusive=True))
    addr = f"127.0.0.1:{srv.address[1]}"
    r = status.probe(addr, rounds=5, bw_bytes=1 << 20)
    st = r["status"]
    assert st["server"]["proto_version"] == protocol.PROTO_VERSION and st["server"]["auth"] is False
    assert st["driver"]["kind"] == "standin" and st["driver"]["device_count"] == 1
    assert [h["mode"] for h in st["leases"]["held"]] == ["exclusive"]
    assert len(r["rtt_s"]) == 5 and all(0 < t < 5 for t in r["rtt_s"])
    assert r["up_Bps"] > 0 and r["down_Bps"] > 0
    log.wait_for(r"status probe")
    assert log.count(r"session start") == 1       # the holder's only
    text = status.format_report(r)
    assert f"gpuwire server {addr}: reachable" in text
    assert "1 held (1 exclusive, 0 shared), 0 waiting" in text and "testhost pid 900" in text
    assert "RTT        min" in text and "bandwidth  up" in text
    holder.close()


def test_probe_is_not_queued_behind_exclusive(control):
    srv, _ = control()
    with open_session(srv, 901, protocol.pack_ext(exclusive=True)):
        with dial(srv) as s:
            hello(s, 902, protocol.pack_ext(status_probe=True, exclusive=True))
            hdr, payload = next_frame(s)
            assert hdr.op == protocol.OP_STATUS
            assert json.loads(payload)["leases"]["queued"] == []


def test_echo_frames_checked(control):
    srv, _ = control()
    with dial(srv) as s:
        hello(s, 1, protocol.pack_ext(status_probe=True))
        assert next_frame(s)[0].op == protocol.OP_STATUS
        s.sendall(protocol.pack_frame(protocol.OP_STATUS, struct.pack("<I", 3) + b"xyz", seq=42))
        hdr, payload = next_frame(s)
        assert (hdr.op, hdr.seq, payload) == (protocol.OP_STATUS, 42, b"\0\0\0")
        s.sendall(protocol.pack_frame(protocol.OP_STATUS, struct.pack("<I", protocol.MAX_PAYLOAD + 1)))
        hdr, payload = next_frame(s)
        assert hdr.op == protocol.OP_ERROR and "echo of" in protocol.parse_error(payload)[1]
    with dial(srv) as s:
        hello(s, 1, protocol.pack_ext(status_probe=True))
        next_frame(s)
        s.sendall(protocol.pack_frame(protocol.OP_FIRST_CALL, b"1234"))
        hdr, payload = next_frame(s)
        assert hdr.op == protocol.OP_ERROR and "STATUS or ADMIN frames" in protocol.parse_error(payload)[1]
    with dial(srv) as s:   # BYE ends it quietly
        hello(s, 1, protocol.pack_ext(status_probe=True))
        next_frame(s)
        s.sendall(protocol.pack_frame(protocol.OP_BYE))
        assert s.recv(10) == b""


def test_status_command_against_real_server(server):
    r = gw("status", "--server", server.address, "--json", "--rounds", "3", "--bytes", "64K")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["reachable"] and len(out["rtt_s"]) == 3 and out["bw_bytes"] == 64 << 10
    assert out["status"]["driver"]["kind"] == "standin"
    r = gw("status", "--server", server.address, "--bytes", "0")
    assert r.returncode == 0 and "reachable" in r.stdout and "bandwidth" not in r.stdout


def test_status_unreachable():
    port = free_port()
    r = gw("status", "--server", f"127.0.0.1:{port}")
    assert r.returncode == 1 and "cannot reach" in r.stderr
    r = gw("status", "--server", f"127.0.0.1:{port}", "--json")
    assert r.returncode == 1 and json.loads(r.stdout)["reachable"] is False


@pytest.fixture(scope="module")
def admin_server(tmp_path_factory):
    mport = free_port()
    srv = start_server(tmp_path_factory.mktemp("admin") / "server.log",
                       extra_args=("--metrics", f"127.0.0.1:{mport}"))
    srv.wait_for_log(r"admin endpoint on")
    yield srv, f"127.0.0.1:{mport}"
    srv.stop()


def test_top_once(admin_server):
    srv, admin = admin_server
    r = gw("top", "--once", "--admin", admin, "--logs", "3")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.startswith("gpuwire 0.")
    assert "GPUs\n  GPU 0  gpuwire CPU stand-in" in out
    assert "Leases: 0 held" in out and "Sessions\n" in out
    assert "Log (last 3 lines)" in out and "listening on" in srv.log_text()
    r = gw("top", "--once", "--server", srv.address)   # the same through a status probe (no log there)
    assert r.returncode == 0 and "Log (" not in r.stdout and "GPU 0" in r.stdout


def test_top_text_render():
    snap = {"server": {"version": "9", "address": "h:1", "uptime_s": 7300, "auth": True},
            "driver": {"kind": "nvidia", "desc": "nvidia 580"},
            "totals": {"sessions_active": 1, "sessions_started": 5, "queued": 1, "refused": {"auth": 2},
                       "bytes_in": 3 << 20, "bytes_out": 1024},
            "gpus": [{"index": 0, "name": "H100", "memory_used": 1 << 30, "memory_total": 80 << 30,
                      "utilization": 0.5}],
            "leases": {"held": [{"mode": "exclusive", "gpus": [0], "owner": "box pid 1 app (session 3)",
                                 "held_s": 65, "mem_cap": 0}],
                       "queued": [{"mode": "shared", "gpus": [0], "owner": "lap pid 2 b (session 4)",
                                   "waited_s": 3}]},
            "sessions": [{"id": 3, "peer": "1.2.3.4:5", "state": "active", "host": "box", "pid": 1, "prog": "app",
                          "lease": "exclusive", "gpus": [0], "mem_cap": 0, "bytes_in": 2048, "bytes_out": 10,
                          "rtt_s": 0.0002, "idle_s": 1, "age_s": 65, "gpu_memory": 1 << 30}],
            "logs": ["a", "b"]}
    text = top.render_text(snap, logs=5)
    assert "up 2h01m" in text and "refused 2" in text and "in 3.0 MiB" in text
    assert "GPU 0  H100  1.0 GiB / 80.0 GiB used  50% busy" in text
    assert "exclusive GPU 0  box pid 1 app (session 3)  for 65s" in text
    assert "waiting #1 shared GPU 0  lap pid 2 b (session 4)" in text
    assert "3   active  box   1    app" in text and "0.20ms" in text
    assert text.rstrip().endswith("  b")


@pytest.mark.skipif(importlib.util.find_spec("textual") is not None, reason="textual is installed here")
def test_top_without_textual_says_so():
    r = gw("top", "--admin", f"127.0.0.1:{free_port()}")
    assert r.returncode == 1 and "needs the Python package `textual`" in r.stderr and "--once" in r.stderr


@pytest.mark.skipif(importlib.util.find_spec("textual") is None, reason="textual (optional) is not installed")
def test_top_tui_headless(control):
    import asyncio

    from gpuwire import metrics

    ring = metrics.LogRing(None)
    srv, _ = control(log_tail=ring.tail)
    for i in range(30):
        ring.write(f"log line {i}\n")
    admin = metrics.AdminServer("127.0.0.1", 0, srv.snapshot).start()
    holder = open_session(srv, 4242, protocol.pack_ext(exclusive=True, mem_cap=1 << 30))

    async def drive():
        app = top.build_app(top.Source(f"127.0.0.1:{admin.address[1]}", None, None), 0.3)
        async with app.run_test(size=(160, 40)) as pilot:
            await pilot.pause(1.0)
            ring.write("log line NEW\n")
            await pilot.pause(0.8)
            row = app.query_one("#sessions").get_row_at(0)
            assert row[:6] == ["1", "active", "testhost", "4242", "prog", "exclusive"]
            assert app.query_one("#log").line_count == 31     # appended, not repeated
            await pilot.press("q")

    try:
        asyncio.run(drive())
    finally:
        holder.close()
        admin.stop()
