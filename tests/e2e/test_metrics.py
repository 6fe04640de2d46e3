"""The admin endpoint: Prometheus text at /metrics, the JSON snapshot at
/status.json, per-session traffic seen through TCP_INFO, and the log ring."""

import io
import json
import re
import socket
import struct
import time
import urllib.error
import urllib.request

import pytest

from control_plane import control, open_session  # noqa: F401 (fixture)
from gpuwire import metrics, protocol, tcpinfo

# name{labels} value, as the Prometheus text format (0.0.4) writes a sample
SAMPLE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? '
                    r'-?[0-9.e+-]+$')


def check_exposition(text: str) -> dict[str, list[str]]:
    """Every line well-formed; returns samples by metric name."""
    assert text.endswith("\n")
    samples: dict[str, list[str]] = {}
    typed = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            typed.add(name)
            # Prometheus naming: a counter's name ends in _total, a gauge's never does
            assert name.endswith("_total") == (kind == "counter"), line
            continue
        if line.startswith("# HELP "):
            continue
        assert SAMPLE.match(line), line
        name = re.match(r"^[^{ ]+", line).group(0)
        assert name in typed, f"{name} has no TYPE line before it"
        samples.setdefault(name, []).append(line)
    return samples


def get(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.status, r.headers.get("Content-Type"), r.read().decode()


def test_tcpinfo_counts_bytes():
    with socket.socket() as lst:
        lst.bind(("127.0.0.1", 0))
        lst.listen()
        c = socket.create_connection(lst.getsockname())
        s, _ = lst.accept()
        with c, s:
            c.sendall(b"x" * 100_000)
            got = 0
            while got < 100_000:
                got += len(s.recv(1 << 20))
            s.sendall(b"y" * 5000)
            c.recv(5000)
            time.sleep(0.05)
            info = tcpinfo.read(s.dup())   # a duplicate descriptor sees the same socket
    assert info is not None
    assert info.bytes_received == 100_000 and info.bytes_sent == 5000
    assert 0 <= info.idle_s < 5 and info.rtt_s >= 0


def test_log_ring():
    inner = io.StringIO()
    ring = metrics.LogRing(inner, keep=3)
    for i in range(5):
        ring.write(f"line {i}\n")
    assert ring.tail(10) == ["line 2", "line 3", "line 4"] and ring.tail(1) == ["line 4"] and ring.tail(0) == []
    assert inner.getvalue().count("\n") == 5


def test_metrics_endpoint(control):
    ring = metrics.LogRing(None)
    srv, log = control(log_tail=ring.tail)
    ring.write("time=2026-01-01T00:00:00.000+00:00 level=INFO msg=\"hello log\"\n")
    admin = metrics.AdminServer("127.0.0.1", 0, srv.snapshot).start()
    base = f"http://127.0.0.1:{admin.address[1]}"
    try:
        with open_session(srv, 77, protocol.pack_ext(exclusive=True, mem_cap=1 << 30)) as s:
            s.sendall(b"z" * 50_000)        # the fake worker echoes it
            got = 0
            while got < 50_000:
                got += len(s.recv(1 << 16))
            time.sleep(0.05)
            status, ctype, text = get(base + "/metrics")
            assert status == 200 and ctype.startswith("text/plain; version=0.0.4")
            samples = check_exposition(text)
            assert samples["gpuwire_sessions_active"] == ["gpuwire_sessions_active 1"]
            assert 'gpuwire_leases{mode="exclusive"} 1' in text
            assert "gpuwire_lease_queue_length 0" in text
            (line,) = samples["gpuwire_session_bytes_received_total"]
            assert 'host="testhost"' in line and 'pid="77"' in line
            assert int(line.rsplit(" ", 1)[1]) >= 50_000
            (line,) = samples["gpuwire_session_bytes_sent_total"]
            assert int(line.rsplit(" ", 1)[1]) >= 50_000
            assert "gpuwire_uptime_seconds" in samples and "gpuwire_build_info" in samples
            status, ctype, body = get(base + "/status.json?logs=5")
            snap = json.loads(body)
            assert ctype == "application/json"
            (sess,) = [x for x in snap["sessions"] if x["pid"] == 77]
            assert sess["state"] == "active" and sess["lease"] == "exclusive" and sess["mem_cap"] == 1 << 30
            assert sess["bytes_in"] >= 50_000 and sess["host"] == "testhost" and sess["worker_pid"]
            assert snap["logs"] == ["time=2026-01-01T00:00:00.000+00:00 level=INFO msg=\"hello log\""]
            assert snap["gpus"] == [{"index": 0, "name": "Fake GPU", "source": "driver"}]
            assert snap["leases"]["held"][0]["owner"].startswith("testhost pid 77 prog")
        log.wait_for(r"session end")
        text = get(base + "/metrics")[2]
        assert "gpuwire_sessions_active 0" in text and "gpuwire_sessions_total 1" in text
        total = int(re.search(r"^gpuwire_bytes_received_total (\d+)$", text, re.M).group(1))
        assert total >= 50_000      # ended sessions stay in the totals
        assert "gpuwire_session_bytes_received_total" not in text
        with pytest.raises(urllib.error.HTTPError) as ei:
            get(base + "/nope")
        assert ei.value.code == 404
    finally:
        admin.stop()


def sample_snapshot() -> dict:
    return {
        "server": {"version": "0.1.0", "proto_version": 1, "started": 1.5e9, "uptime_s": 3.0, "auth": True},
        "driver": {"kind": "nvidia", "version": 13000},
        "totals": {"connections": 3, "sessions_started": 1, "sessions_active": 1, "probes": 0, "auth_ok": 1,
                   "auth_failed": 2, "idle_ended": 0, "refused": {"auth": 2, "busy": 1}, "bytes_in": 10,
                   "bytes_out": 20},
        "leases": {"held": [], "queued": [{}], "granted_total": 1, "refused_total": 0, "wait_seconds_total": 0.5},
        "sessions": [{"id": 4, "host": 'we"ird\nhost', "prog": "p", "pid": 9, "bytes_in": 1, "bytes_out": 2,
                      "rtt_s": 0.001, "idle_s": 0.5, "gpu_memory": 1 << 20}],
        "gpus": [{"index": 0, "name": "NVIDIA H100", "memory_total": 80 << 30, "memory_used": 1 << 30,
                  "utilization": 0.25, "temperature_c": 40}],
    }


def test_render_gpu_and_refusals():
    snap = sample_snapshot()
    text = metrics.render(snap)
    samples = check_exposition(text)
    assert 'gpuwire_refused_total{reason="auth"} 2' in text and 'gpuwire_refused_total{reason="busy"} 1' in text
    assert 'gpuwire_gpu_utilization_ratio{gpu="0",name="NVIDIA H100"} 0.25' in text
    assert f'gpuwire_gpu_memory_total_bytes{{gpu="0",name="NVIDIA H100"}} {80 << 30}' in text
    assert 'host="we\\"ird\\nhost"' in samples["gpuwire_session_bytes_received_total"][0]
    assert samples["gpuwire_session_gpu_memory_bytes"][0].endswith(f" {1 << 20}")
    assert "gpuwire_start_time_seconds 1500000000.0" in text
    assert "gpuwire_lease_queue_length 1" in text


def test_every_counter_is_named_total():
    """Every metric render() can write, counters ending in _total and gauges not
    (check_exposition holds each TYPE line to that)."""
    snap = sample_snapshot()
    snap["server"]["tls"] = "required"
    snap["totals"].update(calls=5, round_trips=4, calls_per_s=1.0, bytes_in_per_s=2.0, bytes_out_per_s=3.0,
                          tls_sessions=1, lanes=2)
    snap["sessions"][0].update(calls=5, round_trips=4, busy_s=0.0, calls_per_s=1.0, bytes_in_per_s=2.0,
                               bytes_out_per_s=3.0, cache={"hit_bytes": 7, "misses": 1})
    snap["cache"] = {"dir": "/c", "totals": {"hits": 1, "misses": 2, "hit_bytes": 3, "miss_bytes": 4,
                                             "stored_bytes": 5, "corrupt": 0, "evicted": 0, "store_failed": 0},
                     "bytes": 9, "entries": 1, "max_bytes": 0}
    samples = check_exposition(metrics.render(snap))
    for name in ("gpuwire_session_bytes_received_total", "gpuwire_session_bytes_sent_total",
                 "gpuwire_session_calls_total", "gpuwire_session_round_trips_total",
                 "gpuwire_session_cache_bytes_avoided_total", "gpuwire_session_cache_misses_total",
                 "gpuwire_calls_total", "gpuwire_cache_hits_total", "gpuwire_session_rtt_seconds",
                 "gpuwire_cache_disk_bytes"):
        assert name in samples, name


def test_admin_endpoint_survives_rude_clients(capfd):
    """Clients that close before reading leave no traceback in the log, one
    that never sends is closed after the request timeout, a flood does not
    stop /metrics answering, and the listen backlog is the main server's."""
    def slow_snapshot(n):
        time.sleep(0.02)  # the clients below are gone before the reply is written
        return sample_snapshot()

    admin = metrics.AdminServer("127.0.0.1", 0, slow_snapshot, request_timeout=0.5).start()
    port = admin.address[1]
    try:
        assert admin.httpd.request_queue_size >= 128
        idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(3)]
        for _ in range(60):
            c = socket.create_connection(("127.0.0.1", port), timeout=10)
            c.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
            c.close()
        start = time.monotonic()
        for c in idle:
            with c:
                try:
                    assert c.recv(1) == b""  # closed by the server, nothing sent
                except ConnectionResetError:
                    pass
        assert time.monotonic() - start < 5
        status, _, text = get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and "gpuwire_build_info" in text
    finally:
        admin.stop()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "BrokenPipe" not in err and "ConnectionReset" not in err, err


def test_admin_endpoint_bounds_its_handlers():
    """Past max_handlers requests at once, a connection is closed at once
    rather than given a thread; the slots come back when the idle ones time out."""
    admin = metrics.AdminServer("127.0.0.1", 0, lambda n: sample_snapshot(), request_timeout=1.0,
                                max_handlers=2).start()
    port = admin.address[1]
    try:
        idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
        time.sleep(0.2)  # both taken by handlers
        with socket.create_connection(("127.0.0.1", port), timeout=10) as extra:
            start = time.monotonic()
            extra.sendall(b"GET /metrics HTTP/1.0\r\n\r\n")
            try:
                assert extra.recv(1) == b""
            except ConnectionResetError:
                pass
            assert time.monotonic() - start < 0.8 and admin.refused == 1
        for c in idle:
            c.close()
        deadline = time.monotonic() + 5
        while True:  # the handlers notice the closed connections and free their slots
            try:
                if get(f"http://127.0.0.1:{port}/metrics")[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        admin.stop()
