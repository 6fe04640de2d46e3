"""What a user of the client sees first (issue 16, items 4 and 5), against the
stand-in and fake servers:

- a server that serves the CPU stand-in says so: one warning line per process,
  whether libcuda, NVML or both connect (HELLO_OK's OK_STANDIN flag);
- something that is not a gpuwire server fails the connection at once with
  one line when it answers something else, within 5 s when it says nothing;
  a server that does not complete the handshake fails it within
  GPUWIRE_HANDSHAKE_TIMEOUT (10 s by default), QUEUED frames counting it again;
- a transfer that takes more than 2 s shows one status line on stderr (bytes
  sent, rate, cache hits, time left), redrawn in place and cleared when done,
  where stderr is a terminal (or GPUWIRE_PROGRESS=force), never with
  `gpuwire run --quiet`; a lease waiting in the queue shows one line too.

None of it reads the server's log."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest

from conftest import GPUWIRE, ROOT, gpuwire_env, gw_python_client
from gpuwire import clientenv, protocol, runner

STANDIN_TEXT = "serves the CPU stand-in driver (a test double), not a GPU: results are not a GPU's"
CUDA_ERROR_NO_DEVICE = 100

# the client's whole opening: cuInit, then whatever the order asks for
OPEN = r"""
import ctypes, sys
for part in sys.argv[1].split(","):
    if part == "cuda":
        rc = ctypes.CDLL("libcuda.so.1").cuInit(0)
    else:
        rc = ctypes.CDLL("libnvidia-ml.so.1").nvmlInit_v2()
    print(part, rc, flush=True)
"""

# a host-to-device copy of N MiB of fresh random bytes (no cache hit), timed
COPY = r"""
import ctypes, os, sys, time
cu = ctypes.CDLL("libcuda.so.1")
assert cu.cuInit(0) == 0
dev, ctx, d = ctypes.c_int(), ctypes.c_void_p(), ctypes.c_uint64()
assert cu.cuDeviceGet(ctypes.byref(dev), 0) == 0
assert cu.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) == 0
assert cu.cuCtxSetCurrent(ctx) == 0
n = int(sys.argv[1]) << 20
assert cu.cuMemAlloc_v2(ctypes.byref(d), ctypes.c_size_t(n)) == 0
src = ctypes.create_string_buffer(os.urandom(n), n)
t = time.monotonic()
assert cu.cuMemcpyHtoD_v2(d, src, ctypes.c_size_t(n)) == 0
took = time.monotonic() - t
assert cu.cuCtxSynchronize() == 0
print(f"copied {took:.2f}", flush=True)
"""


# a copy of 32 MiB, then (its transfer over) one of those 32 MiB and 64 MiB more: 8 of 24 chunks are hits
COPY_AGAIN = r"""
import ctypes, os, time
cu = ctypes.CDLL("libcuda.so.1")
assert cu.cuInit(0) == 0
dev, ctx, d = ctypes.c_int(), ctypes.c_void_p(), ctypes.c_uint64()
assert cu.cuDeviceGet(ctypes.byref(dev), 0) == 0
assert cu.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) == 0
assert cu.cuCtxSetCurrent(ctx) == 0
first = os.urandom(32 << 20)
both = first + os.urandom(64 << 20)
assert cu.cuMemAlloc_v2(ctypes.byref(d), ctypes.c_size_t(len(both))) == 0
assert cu.cuMemcpyHtoD_v2(d, first, ctypes.c_size_t(len(first))) == 0
assert cu.cuCtxSynchronize() == 0
time.sleep(1.5)
t = time.monotonic()
assert cu.cuMemcpyHtoD_v2(d, both, ctypes.c_size_t(len(both))) == 0
took = time.monotonic() - t
assert cu.cuCtxSynchronize() == 0
print(f"copied {took:.2f}", flush=True)
"""


def run_client(server: str, source: str, *args: str, env: dict[str, str] | None = None, quiet: bool = False,
               timeout: float = 60, stderr=subprocess.PIPE) -> tuple[subprocess.CompletedProcess, float]:
    """python -c source args through `gpuwire run`; (result, seconds it took)."""
    cmd = GPUWIRE + ["run", "--server", server] + (["--quiet"] if quiet else []) + \
        ["--", sys.executable, "-c", source, *args]
    t0 = time.monotonic()
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, timeout=timeout,
                       env=gpuwire_env(env))
    took = time.monotonic() - t0
    # as bytes: text mode would turn the status line's \r into \n
    r.stdout = r.stdout.decode(errors="replace")
    r.stderr = r.stderr.decode(errors="replace") if r.stderr is not None else ""
    return r, took


def gpuwire_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("gpuwire:")]


# --- the stand-in says so, once ------------------------------------------------

def test_hello_ok_flags_the_standin(server):
    with socket.create_connection((server.host, server.port), timeout=30) as s:
        s.sendall(protocol.pack_hello(os.getpid(), "testhost", "pytest-ux", _digest()))
        hdr, payload = protocol.recv_frame(s, time.monotonic() + 30)
    assert hdr.op == protocol.OP_HELLO_OK, hdr
    assert protocol.parse_hello_ok(payload).flags & protocol.OK_STANDIN


def _digest() -> int:
    from conftest import client_api_digest
    return client_api_digest()


@pytest.mark.parametrize("order", ["cuda", "nvml", "cuda,nvml", "nvml,cuda"])
def test_standin_warning_once_per_process(server, order):
    r, _ = run_client(server.address, OPEN, order)
    assert r.returncode == 0 and [ln.split()[1] for ln in r.stdout.splitlines()] == ["0"] * len(order.split(",")), \
        r.stdout + r.stderr
    lines = [ln for ln in r.stderr.splitlines() if STANDIN_TEXT in ln]
    assert lines == [f"gpuwire: the server at {server.address} {STANDIN_TEXT}"], r.stderr


# --- not a gpuwire server, or one that does not finish ---------------------------

class FakeServer:
    """A TCP listener on loopback running behave(conn) for each connection."""

    def __init__(self, behave):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.behave = behave
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn):
        try:
            self.behave(conn)
        except OSError:
            pass

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


def http_answer(conn):
    conn.settimeout(2)
    try:
        conn.recv(4096)
    except socket.timeout:
        pass
    conn.sendall(b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\n\r\nBad request\n")
    conn.close()


def junk(conn):
    conn.sendall(bytes([0x17, 0x99, 0x42, 0x01, 0xEE, 0x00, 0x13, 0x37] * 4))
    time.sleep(30)


def silent(conn):
    time.sleep(30)


def queued(times: int, every: float):
    """QUEUED frames, `times` of them `every` seconds apart, then nothing."""
    def behave(conn):
        for k in range(times):
            if k:
                time.sleep(every)
            conn.sendall(protocol.pack_queued(1, 1, k * every, "gpuwire: waiting for an exclusive lease on GPU 0: "
                                              "position 1 of 1, held by someone; waited 0 s"))
        time.sleep(30)
    return behave


@pytest.fixture
def fake():
    made = []

    def make(behave):
        made.append(FakeServer(behave))
        return made[-1]
    yield make
    for f in made:
        f.close()


def failed_once(r: subprocess.CompletedProcess, part: str = "cuda") -> str:
    """The one gpuwire line of a client whose connection failed."""
    assert r.stdout.split() == [part, str(CUDA_ERROR_NO_DEVICE if part == "cuda" else 9)], r.stdout + r.stderr
    lines = gpuwire_lines(r.stderr)
    assert len(lines) == 1, r.stderr
    return lines[0]


@pytest.mark.parametrize("tls", ["0", "1"])
def test_an_http_port_is_named_at_once(fake, tls):
    srv = fake(http_answer)
    r, took = run_client(srv.address, OPEN, "cuda", env={"GPUWIRE_TLS": tls}, timeout=20)
    line = failed_once(r)
    assert f"the server at {srv.address} is not a gpuwire server: it answered \"HTTP/1.0 400 Bad Request\"" in line
    assert took < 4, took


def test_junk_is_named_at_once(fake):
    srv = fake(junk)
    r, took = run_client(srv.address, OPEN, "cuda", timeout=20)
    line = failed_once(r)
    assert f"the server at {srv.address} is not a gpuwire server: it answered bytes 17 99 42 01" in line, line
    assert took < 4, took


def test_nvml_names_it_too(fake):
    srv = fake(http_answer)
    r, took = run_client(srv.address, OPEN, "nvml", timeout=20)
    assert "is not a gpuwire server" in failed_once(r, "nvml") and took < 4


def test_silence_fails_within_5_s(fake):
    srv = fake(silent)
    r, took = run_client(srv.address, OPEN, "cuda", timeout=30)
    line = failed_once(r)
    assert f"no answer from {srv.address} within 5 s of connecting: it is not a gpuwire server" in line, line
    assert 4.5 < took < 8, took


def test_unfinished_handshake_fails_within_10_s(fake):
    srv = fake(queued(1, 0))
    r, took = run_client(srv.address, OPEN, "cuda", timeout=30)
    lines = gpuwire_lines(r.stderr)  # the queue's line (not a terminal: printed), then why it failed
    assert len(lines) == 2 and "waiting for an exclusive lease" in lines[0], r.stderr
    assert f"the server at {srv.address} did not complete the handshake within 10 s" in lines[1], lines
    assert 9.5 < took < 13, took


def test_handshake_timeout_is_honoured(fake):
    srv = fake(queued(1, 0))
    r, took = run_client(srv.address, OPEN, "cuda", env={"GPUWIRE_HANDSHAKE_TIMEOUT": "3"}, timeout=30)
    assert "did not complete the handshake within 3 s" in r.stderr, r.stderr
    assert 2.5 < took < 6, took
    # set, it is also how long the first answer may take (a server slow to start its worker)
    srv = fake(silent)
    r, took = run_client(srv.address, OPEN, "cuda", env={"GPUWIRE_HANDSHAKE_TIMEOUT": "7"}, timeout=30)
    assert "no answer from" in failed_once(r) and "within 7 s of connecting" in r.stderr, r.stderr
    assert 6.5 < took < 10, took


def test_queued_frames_count_the_limit_again(fake):
    srv = fake(queued(4, 1.0))  # 3 s of queue, then silence
    r, took = run_client(srv.address, OPEN, "cuda", env={"GPUWIRE_HANDSHAKE_TIMEOUT": "2"}, timeout=30)
    assert "did not complete the handshake within 2 s" in r.stderr, r.stderr
    assert 4.5 < took < 8, took


def test_handshake_timeout_values_checked(server):
    assert clientenv.problem("GPUWIRE_HANDSHAKE_TIMEOUT", "0") and clientenv.problem("GPUWIRE_HANDSHAKE_TIMEOUT", "2.5")
    assert clientenv.problem("GPUWIRE_HANDSHAKE_TIMEOUT", "30") is None
    r, _ = run_client(server.address, OPEN, "cuda", env={"GPUWIRE_HANDSHAKE_TIMEOUT": "abc"})
    assert r.returncode == 2 and "GPUWIRE_HANDSHAKE_TIMEOUT=abc is not valid" in r.stderr, r.stderr
    # past the runner, the library warns and keeps its default (a tuning knob)
    env = runner.build_env({k: v for k, v in gpuwire_env().items() if not k.startswith("GPUWIRE_")},
                           server=server.address)
    env["GPUWIRE_HANDSHAKE_TIMEOUT"] = "-4"
    r = subprocess.run([sys.executable, "-c", OPEN, "cuda"], env=env, capture_output=True, text=True, timeout=60)
    assert r.stdout.split() == ["cuda", "0"], r.stdout + r.stderr
    assert ("gpuwire: GPUWIRE_HANDSHAKE_TIMEOUT=-4 is not valid: expected an integer from 1 to 3600; "
            "using the default, 10") in r.stderr


# --- progress ---------------------------------------------------------------

@pytest.fixture(scope="module")
def slow_path(server, tmp_path_factory):
    """The stand-in server behind gpuwire-netem at 120 Mbit/s: 64 MiB take over 4 s at the link's rate, and
    a copy returns once its bytes have left (up to about 20 MiB wait in sockets and the emulator's queue),
    so over 2.2 s. The emulator at normal priority and without polling: only its rate matters here, and CI
    has two cores."""
    dest = tmp_path_factory.mktemp("netem")
    subprocess.run(["make", "-s", "-C", str(ROOT / "native" / "netem"), f"DEST={dest}"], check=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([str(dest / "gpuwire-netem"), "--listen", f"127.0.0.1:{port}", "--to", server.address,
                             "--bandwidth-mbps", "120", "--no-realtime", "--spin-us", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline and proc.poll() is None, "gpuwire-netem did not start"
            time.sleep(0.05)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


def slow_copy(r: subprocess.CompletedProcess) -> float:
    assert r.returncode == 0, r.stdout + r.stderr
    took = float(r.stdout.split()[-1])
    assert took > 2.2, f"the copy took {took} s: too fast to show progress"
    return took


def check_status_line(err: str, total: str = "64.0 MiB", cache: str = "cache hits 0 of 16 chunks (0 B)") -> None:
    draws = err.split("\rgpuwire: sent ")[1:]
    assert draws, repr(err[-2000:])
    last = draws[-1]
    assert not last.startswith("0 B "), repr(last)  # the bytes that left are counted, on every path
    assert f" of {total}, " in last and f"MiB/s, {cache}" in last, repr(last)
    assert any(" left\x1b[K" in d for d in draws), draws
    assert "\r\x1b[K" in last, repr(last)  # cleared when done ...
    assert "\n" not in "".join(d.split("\r\x1b[K")[0] for d in draws)  # ... and never a line of its own


def test_progress_forced_shows_and_clears(slow_path):
    r, _ = run_client(slow_path, COPY, "64", env={"GPUWIRE_PROGRESS": "force"})
    slow_copy(r)
    check_status_line(r.stderr)


def test_progress_counts_cache_hits(slow_path):
    r, _ = run_client(slow_path, COPY_AGAIN, env={"GPUWIRE_PROGRESS": "force"})
    slow_copy(r)
    check_status_line(r.stderr, "96.0 MiB", "cache hits 8 of 24 chunks (32.0 MiB)")


def test_progress_without_the_cache(slow_path, tmp_path):
    # every byte sent: on the copy lanes, or the session's connection where there are none (128 MiB: the
    # sockets and gpuwire-netem hold tens of MiB, and the copy returns once its bytes have left)
    for lanes in ("3", "0"):
        stats = tmp_path / f"stats-{lanes}.json"
        r, _ = run_client(slow_path, COPY, "128", env={"GPUWIRE_PROGRESS": "force", "GPUWIRE_CACHE": "0",
                                                        "GPUWIRE_LANES": lanes, "GPUWIRE_STATS": str(stats)})
        slow_copy(r)
        check_status_line(r.stderr, "128.0 MiB", "cache not used")
        assert (json.loads(stats.read_text())["lane_bytes"] >= 128 << 20) == (lanes != "0")


def test_progress_on_a_terminal(slow_path):
    """On by default where stderr is a terminal, and cut to its width (a wrapped line is not redrawn in place)."""
    main, sub = pty.openpty()
    fcntl.ioctl(sub, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 70, 0, 0))
    got = bytearray()

    def drain():
        while True:
            try:
                chunk = os.read(main, 65536)
            except OSError:
                return
            if not chunk:
                return
            got.extend(chunk)
    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        r, _ = run_client(slow_path, COPY, "64", stderr=sub)
    finally:
        os.close(sub)
    reader.join(10)
    os.close(main)
    slow_copy(r)
    err = got.decode(errors="replace").replace("\r\n", "\n")
    draws = [d.split("\x1b[K")[0] for d in err.split("\rgpuwire: sent ")[1:]]
    assert draws and all(len("gpuwire: sent " + d) <= 69 for d in draws), draws
    assert all(" of 64.0 MiB, " in d and "MiB/s, cache hits 0 of 16" in d for d in draws), draws
    assert "\r\x1b[K" in err.split("\rgpuwire: sent ")[-1], repr(err[-300:])


def test_no_progress_off_a_terminal_or_quiet(slow_path):
    r, _ = run_client(slow_path, COPY, "64")  # stderr is a pipe
    slow_copy(r)
    assert "sent " not in r.stderr and "\r" not in r.stderr, repr(r.stderr)
    r, _ = run_client(slow_path, COPY, "64", env={"GPUWIRE_PROGRESS": "force"}, quiet=True)
    slow_copy(r)
    assert "sent " not in r.stderr and "\r" not in r.stderr, repr(r.stderr)
    assert runner.build_env({}, native_dir=Path("/x"), audit=Path("/x/a.so"), quiet=True)["GPUWIRE_PROGRESS"] == "0"


def test_queue_wait_is_one_line_in_place(server):
    holder = gw_python_client(server.address, "import ctypes, sys\n"
                              "assert ctypes.CDLL('libcuda.so.1').cuInit(0) == 0\n"
                              "print('ready', flush=True)\nsys.stdin.readline()\n",
                              env={"GPUWIRE_LEASE": "exclusive"})
    try:
        waiter = subprocess.Popen(GPUWIRE + ["run", "--server", server.address, "--", sys.executable, "-c", OPEN,
                                             "cuda"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  env=gpuwire_env({"GPUWIRE_LEASE": "exclusive", "GPUWIRE_PROGRESS": "force"}))
        time.sleep(4.5)  # QUEUED frames come every 2 s
    finally:
        holder.stdin.write("\n")
        holder.stdin.flush()
        holder.wait(30)
    out, err = (b.decode(errors="replace") for b in waiter.communicate(timeout=60))
    assert out.split() == ["cuda", "0"], out + err
    assert err.count("\rgpuwire: waiting for an exclusive lease") >= 2, repr(err)
    assert "waiting for an exclusive lease" not in "".join(ln for ln in err.splitlines(True) if ln.endswith("\n")
                                                           and "\r" not in ln), repr(err)
    queue_part = err[:err.rindex("waiting for an exclusive lease")]
    assert "\n" not in queue_part, repr(err)
    assert "\r\x1b[K" in err[err.rindex("waiting for an exclusive lease"):], repr(err)
