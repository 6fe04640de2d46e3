"""The server's control plane in-process, with a stand-in for gpuwire-worker
(a small Python script): handshake, hand-off of the socket, relaying the
worker's log, session end, limits and shutdown. Needs no native parts."""

import re
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from gpuwire import protocol
from gpuwire.address import parse as parse_address
from gpuwire.driver import Driver
from gpuwire.log import Logger

from control_plane import Lines, make_server  # a log stream tests can read; an in-process Server

FAKE_WORKER = r"""
import argparse, socket, struct, sys
ap = argparse.ArgumentParser()
for a in ("--fd", "--driver", "--session", "--api-digest", "--client"):
    ap.add_argument(a, required=True)
ap.add_argument("--nvml")  # where the worker would find NVML
ap.add_argument("--lane-fd")  # where the server hands it lanes (docs/protocol.md)
ap.add_argument("--lanes")
args, _ = ap.parse_known_args()  # options it has no use for (--server-pid, --stall-timeout, ...)
sock = socket.socket(fileno=int(args.fd))
print(f"INFO fake worker session={args.session} digest={args.api_digest} driver={args.driver} "
      f"blocking={sock.getblocking()} lanes={args.lanes} lane_fd={args.lane_fd is not None} "
      f"client=[{args.client}]", file=sys.stderr, flush=True)
payload = struct.pack("<IiII64s", 1, 13000, 1, 0, b"fake worker")
sock.sendall(struct.pack("<IHHII", len(payload), 2, 0, 0, 0) + payload)
while sock.recv(4096):
    pass
print("ERROR fake worker: client went away\x1b[31m", file=sys.stderr, flush=True)
sys.exit(3)
"""

# logfmt: time (ISO 8601 with offset), level, msg, then key=value, a value bare or JSON-quoted
_VALUE = r'(?:"(?:[^"\\]|\\.)*"|[^\s"=]+)'
LINE = re.compile(r"^time=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d level=(DEBUG|INFO|WARN|ERROR) "
                  rf"msg={_VALUE}( [a-z_]+={_VALUE})*$")


@pytest.fixture
def control(tmp_path):
    def start(worker_cmd=None, **kw):
        script = tmp_path / "fake_worker.py"
        script.write_text(FAKE_WORKER)
        log = Lines()
        drv = Driver(kind="standin", path=Path("/fake/libgpuwire_standin.so"), driver_version=13000,
                     device_count=1, desc="fake")
        srv = make_server(drv, Logger(log, "DEBUG"), worker_cmd=worker_cmd or [sys.executable, str(script)], **kw)
        srv.bind()
        t = threading.Thread(target=srv.serve_forever, daemon=True)
        t.start()
        started.append((srv, t))
        return srv, log

    started = []
    yield start
    for srv, t in started:
        srv.stop()
        t.join(5)


def dial(srv):
    s = socket.create_connection(srv.address, timeout=10)
    return s


def test_session_handed_to_worker(control):
    srv, log = control()
    with dial(srv) as s:
        s.sendall(protocol.pack_hello(4242, "my host", "prog\nname", 0xCAFEF00D))
        hdr, payload = protocol.recv_frame(s, time.monotonic() + 10)
        assert hdr.op == protocol.OP_HELLO_OK
        assert protocol.parse_hello_ok(payload).driver_desc == "fake worker"
        start = log.wait_for(r"session start")
        sid = re.search(r"session=(\d+)", start).group(1)
        assert "pid=4242" in start and "api_digest=0xcafef00d" in start
        relayed = log.wait_for(r"fake worker session=.* src=worker")
        assert f"session={sid} " in relayed
        assert f"fake worker session={sid} digest={0xCAFEF00D} driver=/fake/libgpuwire_standin.so" in relayed
        assert "blocking=True" in relayed
        assert "lanes=3 lane_fd=True" in relayed  # a plaintext session may open lanes
        assert re.search(r"client=\[127\.0\.0\.1:\d+ pid=4242 host=my_host prog=prog\?name\]", relayed), relayed
    end = log.wait_for(rf"session end\" session={sid}( |$)")
    assert 'status="exit status 3"' in end
    err = log.wait_for(r"level=ERROR msg=.*client went away.* session=\d+ src=worker")
    assert "\x1b" not in err
    for ln in log.lines():
        assert LINE.match(ln), ln


def test_handshake_timeout(control):
    srv, log = control(handshake_timeout=0.5)
    with dial(srv) as s:
        s.sendall(b"\1\0")
        s.settimeout(10)
        data = s.recv(4096)
        hdr = protocol.unpack_header(data[:16])
        assert hdr.op == protocol.OP_ERROR
        code, msg = protocol.parse_error(data[16:16 + hdr.length])
        assert code == protocol.ERR_MALFORMED and "no complete HELLO within 0.5 s" in msg
        assert s.recv(10) == b""
    log.wait_for(r"WARN .*handshake refused: no complete HELLO")


def test_bad_hello_refused_without_worker(control):
    srv, log = control()
    with dial(srv) as s:
        s.sendall(protocol.pack_hello(1, "h", "p", 0, proto_version=1))  # an older client
        hdr, payload = protocol.recv_frame(s, time.monotonic() + 10)
        assert hdr.op == protocol.OP_ERROR and protocol.parse_error(payload)[0] == protocol.ERR_VERSION
    log.wait_for(r"handshake refused: client speaks gpuwire protocol version 1")
    assert not any("session start" in ln for ln in log.lines())


def test_session_limit(control):
    srv, log = control(max_sessions=1)
    first = dial(srv)
    first.sendall(protocol.pack_hello(1, "h", "p", 0))
    protocol.recv_frame(first, time.monotonic() + 10)
    with dial(srv) as s:  # refused once it has said who it is (connections before that count apart)
        s.sendall(protocol.pack_hello(3, "h", "p", 0))
        hdr, payload = protocol.recv_frame(s, time.monotonic() + 10)
        code, msg = protocol.parse_error(payload)
        assert code == protocol.ERR_REFUSED and "busy" in msg
    first.close()
    log.wait_for(r"session end")
    deadline = time.monotonic() + 5
    while True:  # the slot frees once the first session has ended
        with dial(srv) as s:
            s.sendall(protocol.pack_hello(2, "h", "p", 0))
            hdr, _ = protocol.recv_frame(s, time.monotonic() + 10)
            if hdr.op == protocol.OP_HELLO_OK or time.monotonic() > deadline:
                break
        time.sleep(0.05)
    assert hdr.op == protocol.OP_HELLO_OK


def test_worker_that_cannot_start(control, tmp_path):
    srv, log = control(worker_cmd=[str(tmp_path / "no-such-worker")])
    with dial(srv) as s:
        s.sendall(protocol.pack_hello(1, "h", "p", 0))
        hdr, payload = protocol.recv_frame(s, time.monotonic() + 10)
        code, msg = protocol.parse_error(payload)
        assert code == protocol.ERR_DRIVER and "could not start its worker" in msg
    log.wait_for(r"ERROR .*could not start worker")
    with dial(srv) as s:  # still serving
        s.sendall(protocol.pack_hello(1, "h", "p", 0, magic=b"xxxxxxxx"))
        hdr, _ = protocol.recv_frame(s, time.monotonic() + 10)
        assert hdr.op == protocol.OP_ERROR


def test_stop_terminates_workers(control):
    srv, log = control()
    s = dial(srv)
    s.sendall(protocol.pack_hello(1, "h", "p", 0))
    protocol.recv_frame(s, time.monotonic() + 10)
    log.wait_for(r"session start")
    srv.stop()
    end = log.wait_for(r"session end")
    assert "killed by SIGTERM" in end
    assert s.recv(10) == b""
    s.close()
    with pytest.raises(OSError):
        socket.create_connection(srv.address, timeout=2).close()


@pytest.mark.parametrize("text, expect", [
    ("127.0.0.1:7750", ("127.0.0.1", 7750)),
    ("gpu-box", ("gpu-box", 7750)),
    (":9000", ("0.0.0.0", 9000)),
    ("[::1]:7751", ("::1", 7751)),
    ("host:0", ("host", 0)),
])
def test_parse_listen_address(text, expect):
    assert parse_address(text, listen=True) == expect


@pytest.mark.parametrize("text", ["host:port", "::1:7750", "h:70000", "[::1", "[::1]x"])
def test_parse_listen_address_rejects(text):
    with pytest.raises(ValueError):
        parse_address(text, listen=True)
