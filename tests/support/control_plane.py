"""Helpers for the control-plane tests (leases, auth, metrics, status): an
in-process Server with a Python stand-in for gpuwire-worker that reports the
arguments and environment it got, answers HELLO_OK and then waits for the
client to go. Needs no native parts."""

from __future__ import annotations

import re
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from gpuwire import protocol
from gpuwire.config import ServerConfig
from gpuwire.driver import Driver
from gpuwire.log import Logger
from gpuwire.server import Server

FAKE_WORKER = r"""
import json, os, socket, struct, sys
args = sys.argv[1:]
opts = dict(zip(args[::2], args[1::2]))
sock = socket.socket(fileno=int(opts["--fd"]))
info = {"args": opts, "visible": os.environ.get("CUDA_VISIBLE_DEVICES")}
print("INFO fakeworker " + json.dumps(info, separators=(",", ":")), file=sys.stderr, flush=True)
payload = struct.pack("<IiII64s", 1, 13000, 1, 0, b"fake worker")
sock.sendall(struct.pack("<IHHII", len(payload), 2, 0, 0, 0) + payload)
while True:
    data = sock.recv(65536)
    if not data:
        break
    sock.sendall(data)  # echo: lets tests move bytes through the session
sys.exit(0)
"""


def log_message(line: str) -> str:
    """The msg of a logfmt log line (log.py), unquoted."""
    import json

    m = re.search(r' msg=("(?:[^"\\]|\\.)*"|\S+)', line)
    assert m, f"no msg= in {line!r}"
    v = m.group(1)
    return json.loads(v) if v.startswith('"') else v


class Lines:
    """A log stream tests can read."""

    def __init__(self):
        self.text = ""
        self.lock = threading.Lock()

    def write(self, s):
        with self.lock:
            self.text += s

    def flush(self):
        pass

    def lines(self):
        with self.lock:
            return self.text.splitlines()

    def wait_for(self, pattern, timeout=10.0):
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for ln in self.lines():
                if rx.search(ln):
                    return ln
            time.sleep(0.02)
        pytest.fail(f"no log line matching {pattern!r}:\n" + "\n".join(self.lines()))

    def count(self, pattern):
        rx = re.compile(pattern)
        return sum(1 for ln in self.lines() if rx.search(ln))


def make_server(drv: Driver, log: Logger, **kw) -> Server:
    """An in-process Server on a free loopback port: keywords naming a ServerConfig
    field are settings (no idle reaper unless lease_idle_timeout is given), the rest
    go to Server (worker_cmd, tokens, tls_settings, log_tail)."""
    settings = {"listen": "127.0.0.1:0", "lease_idle_timeout": 0.0}
    settings.update({k: kw.pop(k) for k in list(kw) if k in ServerConfig.__dataclass_fields__})
    return Server(ServerConfig(**settings), drv, log, **kw)


def make_control(tmp_path: Path):
    """A factory starting in-process servers (stopped by the returned cleanup)."""
    started = []

    def start(device_count: int = 1, **kw):
        script = tmp_path / "fake_worker.py"
        script.write_text(FAKE_WORKER)
        log = Lines()
        drv = Driver(kind="standin", path=Path("/fake/libgpuwire_standin.so"), driver_version=13000,
                     device_count=device_count, desc="fake", device_name="Fake GPU")
        kw.setdefault("worker_cmd", [sys.executable, str(script)])
        srv = make_server(drv, Logger(log, "DEBUG"), **kw)
        srv.bind()
        t = threading.Thread(target=srv.serve_forever, daemon=True)
        t.start()
        started.append((srv, t))
        return srv, log

    def cleanup():
        for srv, t in started:
            srv.stop()
            t.join(5)

    return start, cleanup


@pytest.fixture
def control(tmp_path):
    start, cleanup = make_control(tmp_path)
    yield start
    cleanup()


def dial(srv) -> socket.socket:
    s = socket.create_connection(srv.address, timeout=10)
    s.settimeout(10)
    return s


def hello(sock, pid=1, ext=b"", prog="prog", host="testhost"):
    sock.sendall(protocol.pack_hello(pid, host, prog, 0, ext=ext))


def next_frame(sock, timeout=10.0):
    return protocol.recv_frame(sock, time.monotonic() + timeout)


def open_session(srv, pid, ext=b"", timeout=10.0):
    """A connection whose HELLO_OK has arrived (fails the test otherwise)."""
    s = dial(srv)
    hello(s, pid, ext)
    hdr, payload = next_frame(s, timeout)
    if hdr.op != protocol.OP_HELLO_OK:
        pytest.fail(f"expected HELLO_OK, got op {hdr.op} {payload[:200]!r}")
    return s
