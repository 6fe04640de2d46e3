"""gpuwire-netem, the network-path emulator of bench/run: no loss or reordering under load,
and the delay and bandwidth it promises. Builds its own copy (needs cc and make); < 30 s."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def netem_bin(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("netem")
    subprocess.run(["make", "-s", "-C", str(ROOT / "native" / "netem"), f"DEST={dest}"], check=True)
    return dest / "gpuwire-netem"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Upstream:
    """A TCP server on 127.0.0.1 running handler(conn) for each connection, in threads."""

    def __init__(self, handler):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.handler = handler
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn):
        with conn:
            self.handler(conn)

    def close(self):
        self.sock.close()


def echo(conn: socket.socket) -> None:
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    while True:
        n = conn.recv_into(buf)
        if not n:
            conn.shutdown(socket.SHUT_WR)
            return
        conn.sendall(view[:n])


def sink(conn: socket.socket) -> None:
    """Reads everything, then answers with the byte count."""
    buf = bytearray(1 << 20)
    total = 0
    while True:
        n = conn.recv_into(buf)
        if not n:
            break
        total += n
    conn.sendall(str(total).encode())


def source(conn: socket.socket) -> None:
    """Sends the number of bytes asked for (a decimal line), then closes."""
    line = b""
    while not line.endswith(b"\n"):
        chunk = conn.recv(64)
        if not chunk:
            return
        line += chunk
    left = int(line)
    block = b"\xa5" * (1 << 16)
    while left:
        n = min(left, len(block))
        conn.sendall(block[:n])
        left -= n


class Netem:
    def __init__(self, binary: Path, to_port: int, *args: str):
        self.port = _free_port()
        self.proc = subprocess.Popen([str(binary), "--listen", f"127.0.0.1:{self.port}",
                                      "--to", f"127.0.0.1:{to_port}", *args])
        deadline = time.monotonic() + 5
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.stop()
                    raise RuntimeError("gpuwire-netem did not start")
                time.sleep(0.02)

    def connect(self) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.port))
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def stop(self):
        self.proc.terminate()
        self.proc.wait(5)


@pytest.fixture
def upstream():
    servers = []

    def make(handler):
        servers.append(Upstream(handler))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def _blocks(total: int, block: int):
    """Deterministic, position-dependent data: reordering or loss changes the hash."""
    base = os.urandom(block)
    for i in range(total // block):
        k = (i * 7919) % block
        yield base[k:] + base[:k]


def test_one_gib_echo_is_intact(netem_bin, upstream):
    total, block = 1 << 30, 4 << 20
    up = upstream(echo)
    net = Netem(netem_bin, up.port)  # unlimited, no delay
    try:
        s = net.connect()
        sent = hashlib.blake2b()
        recv = hashlib.blake2b()
        got = [0]

        def reader():
            buf = bytearray(4 << 20)
            view = memoryview(buf)
            while True:
                n = s.recv_into(buf)
                if not n:
                    return
                recv.update(view[:n])
                got[0] += n

        t = threading.Thread(target=reader)
        t0 = time.monotonic()
        t.start()
        for b in _blocks(total, block):
            sent.update(b)
            s.sendall(b)
        s.shutdown(socket.SHUT_WR)
        t.join(60)
        elapsed = time.monotonic() - t0
        s.close()
        assert got[0] == total
        assert recv.hexdigest() == sent.hexdigest()
        print(f"1 GiB echoed through gpuwire-netem in {elapsed:.2f} s")
    finally:
        net.stop()


def test_many_connections_at_once(netem_bin, upstream):
    up = upstream(echo)
    net = Netem(netem_bin, up.port, "--rtt-us", "500")
    errors = []

    def client(i):
        try:
            with net.connect() as s:
                data = bytes([i]) * (100_000 + i)
                s.sendall(data)
                s.shutdown(socket.SHUT_WR)
                back = bytearray()
                while chunk := s.recv(65536):
                    back += chunk
                if back != data:
                    errors.append(i)
        except OSError as e:
            errors.append((i, e))

    try:
        threads = [threading.Thread(target=client, args=(i,)) for i in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert not errors
    finally:
        net.stop()


def test_round_trip_time(netem_bin, upstream):
    up = upstream(echo)
    net = Netem(netem_bin, up.port, "--rtt-us", "2000")
    try:
        with net.connect() as s:
            s.sendall(b"x")
            assert s.recv(1) == b"x"
            t0 = time.monotonic()
            for i in range(100):
                s.sendall(bytes([i]))
                assert s.recv(1) == bytes([i])
            elapsed = time.monotonic() - t0
        print(f"100 round trips at 2 ms RTT: {elapsed * 1000:.1f} ms")
        assert 0.200 <= elapsed < 0.400
    finally:
        net.stop()


def test_bandwidth_limit(netem_bin, upstream):
    total = 25_000_000
    up = upstream(source)
    net = Netem(netem_bin, up.port, "--bandwidth-mbps", "100")
    try:
        with net.connect() as s:
            t0 = time.monotonic()
            s.sendall(f"{total}\n".encode())
            got = 0
            while chunk := s.recv(1 << 20):
                got += len(chunk)
            elapsed = time.monotonic() - t0
        assert got == total
        print(f"25 MB at 100 Mbit/s: {elapsed:.2f} s")
        assert 1.9 <= elapsed < 2.4  # 25e6 * 8 / 100e6 = 2.0 s
    finally:
        net.stop()


def upload(s: socket.socket, total: int) -> bytes:
    """Sends total bytes to a sink, then EOF; its answer (the count it got)."""
    block = b"\x5a" * (1 << 20)
    left = total
    while left:
        n = min(left, len(block))
        s.sendall(block[:n])
        left -= n
    s.shutdown(socket.SHUT_WR)
    return s.recv(64)


def test_bandwidth_limit_upload(netem_bin, upstream):
    total = 12_500_000
    up = upstream(sink)
    net = Netem(netem_bin, up.port, "--bandwidth-mbps", "100", "--rtt-us", "1000")
    try:
        with net.connect() as s:
            t0 = time.monotonic()
            answer = upload(s, total)
            elapsed = time.monotonic() - t0
        assert int(answer) == total
        assert 0.95 <= elapsed < 1.3  # 1.0 s of link time + 1 ms
    finally:
        net.stop()


def test_connections_share_the_link(netem_bin, upstream):
    # two uploads at once over one emulated path: together they get the link's
    # bandwidth, not each (a client's copy lanes must not multiply it)
    total = 6_250_000
    up = upstream(sink)
    net = Netem(netem_bin, up.port, "--bandwidth-mbps", "100")
    answers = []

    def one():
        with net.connect() as s:
            answers.append(int(upload(s, total)))

    try:
        t0 = time.monotonic()
        threads = [threading.Thread(target=one) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        elapsed = time.monotonic() - t0
        assert answers == [total, total]
        print(f"2 x 6.25 MB at 100 Mbit/s shared: {elapsed:.2f} s")
        assert 0.95 <= elapsed < 1.3  # 12.5e6 * 8 / 100e6 = 1.0 s (0.5 s if each had its own link)
    finally:
        net.stop()
