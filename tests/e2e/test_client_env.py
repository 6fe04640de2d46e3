"""The client's GPUWIRE_* variables (issue 18, finding 12) and its sockets'
keepalive (finding 4, client side), against the stand-in.

A bad value gets one line naming the variable, the value and what is
accepted: a setting of the session (server, lease, cap, GPU, TLS) fails the
connection, never falls back to something broader; a tuning knob keeps its
default. `gpuwire run` refuses the same values up front with exit status 2."""

import ctypes
import json
import os
import socket
import subprocess
import sys

import pytest

from conftest import GPUWIRE, ROOT, explain, gpuwire_env, gw_python_client, gw_run
from gpuwire import clientenv, runner
from gpuwire.address import parse as parse_address

PROGRAMS = ROOT / "build" / "programs"
VECTOR_ADD = PROGRAMS / "vector_add_shared"
LANE_COPIES = PROGRAMS / "lane_copies"
MEMCPY_KINDS = PROGRAMS / "memcpy_kinds_shared"

# settings of the session: a bad value means no connection
STRICT = [
    ("GPUWIRE_GPU", "abc"), ("GPUWIRE_GPU", "-1"), ("GPUWIRE_GPU", "1x"), ("GPUWIRE_GPU", "70000"),
    ("GPUWIRE_MEM_CAP", "-5"), ("GPUWIRE_MEM_CAP", "0"), ("GPUWIRE_MEM_CAP", "lots"),
    ("GPUWIRE_MEM_CAP", "99999999999T"), ("GPUWIRE_MEM_CAP", "1.5G"),
    ("GPUWIRE_LEASE", "both"), ("GPUWIRE_NO_WAIT", "maybe"),
    ("GPUWIRE_SERVER", "::1"), ("GPUWIRE_SERVER", "host:0"), ("GPUWIRE_SERVER", "host:99999"),
    ("GPUWIRE_SERVER", "[::1"), ("GPUWIRE_SERVER", "host:"), ("GPUWIRE_SERVER", "a b:7750"),
    ("GPUWIRE_TLS", "2"), ("GPUWIRE_TLS_CA", "/nonexistent/ca.pem"), ("GPUWIRE_TLS_CERT", "/nonexistent/c.pem"),
]
# tuning knobs: a warning, then the default. Each list is reached by one program.
TUNING_LANE_COPIES = [
    ("GPUWIRE_LANES", "1000"), ("GPUWIRE_FLUSH_US", "1e20"), ("GPUWIRE_CACHE_MIN", "abc"),
    ("GPUWIRE_HASH_THREADS", "-3"), ("GPUWIRE_CACHE", "maybe"), ("GPUWIRE_CACHE_COMPRESS", "zip"),
    ("GPUWIRE_MEMO", "2"), ("GPUWIRE_DEBUG", "yes"), ("GPUWIRE_TRACE_RT", "9"), ("GPUWIRE_SAMPLE_US", "5"),
    ("GPUWIRE_SPIN_US", "fast"), ("GPUWIRE_EAGER_FLUSH_US", "-2"),
]
TUNING_MEMCPY_KINDS = [
    ("GPUWIRE_CACHE_MIN_IMAGE", "-1"), ("GPUWIRE_LANDINGS", "x"), ("GPUWIRE_CUBIN_INFO", "x"),
    ("GPUWIRE_FLUSH_US", "-1"),
]


def need(program):
    if not program.exists():
        pytest.skip(f"{program.name} is not built (run scripts/setup)")


def direct_env(server: str, extra: dict[str, str]) -> dict[str, str]:
    """The environment `gpuwire run` gives a program, with `extra` put in
    afterwards (past the runner's own checks, to reach the library's)."""
    base = {k: v for k, v in gpuwire_env().items() if not k.startswith("GPUWIRE_")}
    env = runner.build_env(base, server=server)
    env.update(extra)
    return env


def run_direct(cmd, server: str, extra: dict[str, str], timeout: float = 120):
    return subprocess.run([str(c) for c in cmd], env=direct_env(server, extra), capture_output=True, text=True,
                          errors="replace", timeout=timeout)


# --- the rules themselves --------------------------------------------------


def test_server_address_syntax_matches_the_python_commands():
    good = {"gpu-box": ("gpu-box", 7750), "gpu-box:7751": ("gpu-box", 7751), "[::1]": ("::1", 7750),
            "[fe80::1%eth0]:9": ("fe80::1%eth0", 9), " 10.0.0.1:80 ": ("10.0.0.1", 80), ":7752": ("0.0.0.0", 7752)}
    for text, want in good.items():
        assert clientenv.parse_server(text) == want == parse_address(text), text
    for text in ["::1", "host:", "host:0", "host:65536", "host:x", "host:-1", "[::1", "[::1]x", "[::1]:",
                 "a b:1", "h:1:2"]:
        assert clientenv.parse_server(text) is None, text


def test_sizes():
    assert clientenv.parse_size("8G") == 8 << 30 and clientenv.parse_size("8gib") == 8 << 30
    assert clientenv.parse_size("4GB") == 4 * 10**9 and clientenv.parse_size("512") == 512
    for text in ["-5", "abc", "1.5G", " 1G", "1 G", "8X", "99999999999T", ""]:
        assert clientenv.parse_size(text) is None, text


@pytest.mark.parametrize("name,value", STRICT + TUNING_LANE_COPIES + TUNING_MEMCPY_KINDS)
def test_runner_refuses_a_bad_value(name, value):
    with pytest.raises(ValueError) as e:
        runner.build_env({name: value}, native_dir=ROOT, audit=ROOT / "audit.so")
    assert str(e.value) == clientenv.problem(name, value)
    assert f"{name}={value} is not valid: expected " in str(e.value)


def test_runner_takes_good_values(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    good = {"GPUWIRE_GPU": "0", "GPUWIRE_MEM_CAP": "8GiB", "GPUWIRE_LEASE": "exclusive", "GPUWIRE_NO_WAIT": "1",
            "GPUWIRE_TLS": "auto", "GPUWIRE_TLS_CA": str(ca), "GPUWIRE_LANES": "0", "GPUWIRE_FLUSH_US": "0",
            "GPUWIRE_CACHE_MIN": "4M", "GPUWIRE_HASH_THREADS": "32", "GPUWIRE_CACHE": "off", "GPUWIRE_DEBUG": "2",
            "GPUWIRE_TRACE_RT": "2", "GPUWIRE_CACHE_COMPRESS": "on", "GPUWIRE_SAMPLE_US": "100",
            "GPUWIRE_SERVER": "[::1]:7751", "GPUWIRE_COMPILE_CACHE": "off"}
    env = runner.build_env(good, native_dir=ROOT, audit=ROOT / "audit.so")
    assert env["GPUWIRE_SERVER"] == "[::1]:7751"


@pytest.mark.parametrize("args,env,line", [
    ([], {"GPUWIRE_GPU": "abc"}, "GPUWIRE_GPU=abc is not valid: expected an integer from 0 to 65535"),
    ([], {"GPUWIRE_LANES": "abc"}, "GPUWIRE_LANES=abc is not valid: expected an integer from 0 to 8"),
    (["--server", "host:99999"], {}, "--server 'host:99999' is not valid: the port must be a number from 1 to 65535"),
    (["--mem-cap", "0"], {}, "GPUWIRE_MEM_CAP=0 is not valid: expected a size of at least 1 byte"),
    (["--stats", "/nonexistent/dir/s.json"], {}, "--stats /nonexistent/dir/s.json: the folder /nonexistent/dir "
                                                  "does not exist"),
    (["--token-file", "/nonexistent/token"], {}, "--token-file /nonexistent/token: no such file"),
])
def test_gpuwire_run_exits_2_with_one_line(args, env, line):
    r = subprocess.run(GPUWIRE + ["run", *args, "--", "sh", "-c", "echo ran"], capture_output=True, text=True,
                       timeout=60, env=gpuwire_env(env))
    assert r.returncode == 2 and r.stdout == "", (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"gpuwire run: {line}"), r.stderr


# --- the client library -----------------------------------------------------


@pytest.mark.parametrize("name,value", STRICT)
def test_bad_session_setting_fails_the_connection(server, name, value):
    need(VECTOR_ADD)
    r = run_direct([VECTOR_ADD], server.address, {name: value})
    assert r.returncode != 0 and "PASS" not in r.stdout, explain(r, server)
    assert "cudaErrorNoDevice" in r.stdout, explain(r, server)
    want = f"gpuwire: {clientenv.problem(name, value)}; not connecting: CUDA calls fail with CUDA_ERROR_NO_DEVICE"
    assert want in r.stderr.splitlines(), explain(r, server)


def test_nvml_refuses_a_bad_session_setting_too(server):
    code = ("import ctypes; nv = ctypes.CDLL('libnvidia-ml.so.1'); print(nv.nvmlInit_v2())")
    r = run_direct([sys.executable, "-c", code], server.address, {"GPUWIRE_GPU": "abc"})
    assert r.stdout.strip() == "9", explain(r, server)  # NVML_ERROR_DRIVER_NOT_LOADED
    want = (f"gpuwire: {clientenv.problem('GPUWIRE_GPU', 'abc')}; not connecting: NVML calls fail with "
            "NVML_ERROR_DRIVER_NOT_LOADED")
    assert want in r.stderr.splitlines(), explain(r, server)


def test_good_session_settings_still_connect(server, tmp_path):
    need(VECTOR_ADD)
    ca = tmp_path / "ca.pem"
    ca.write_text("unused: the server is on loopback")
    good = {"GPUWIRE_GPU": "0", "GPUWIRE_MEM_CAP": "1GiB", "GPUWIRE_LEASE": "shared", "GPUWIRE_NO_WAIT": "no",
            "GPUWIRE_TLS": "auto", "GPUWIRE_TLS_CA": str(ca), "GPUWIRE_DEBUG": "0"}
    r = gw_run([str(VECTOR_ADD)], server=f" [{server.host}]:{server.port} ", env=good)
    assert r.returncode == 0 and "PASS" in r.stdout, explain(r, server)
    assert "is not valid" not in r.stderr, r.stderr


def assert_warned(r, bad):
    for name, value in bad:
        line = next((ln for ln in r.stderr.splitlines() if ln.startswith(f"gpuwire: {name}={value} ")), None)
        assert line is not None, f"no line for {name}={value}:\n{r.stderr}"
        assert line.startswith(f"gpuwire: {clientenv.problem(name, value)}; using the default") or \
            line.startswith(f"gpuwire: {clientenv.problem(name, value)}; no ") or \
            line.startswith(f"gpuwire: {clientenv.problem(name, value)}; not tracing"), line


def test_bad_tuning_knobs_warn_and_keep_their_defaults(server, tmp_path):
    need(LANE_COPIES)
    stats = tmp_path / "stats.json"
    bad = dict(TUNING_LANE_COPIES)
    r = run_direct([LANE_COPIES, "9"], server.address,
                   {**bad, "GPUWIRE_STATS": str(stats), "GPUWIRE_SAMPLE": str(tmp_path / "sample.txt")})
    assert r.returncode == 0 and "PASS lane_copies" in r.stdout, explain(r, server)
    assert_warned(r, TUNING_LANE_COPIES)
    s = json.loads(stats.read_text())
    assert s["lanes"] == 3, s  # the server's grant, not 1000 nor none
    assert "one per 1000 us" in (tmp_path / "sample.txt").read_text()


def test_more_bad_tuning_knobs(server):
    need(MEMCPY_KINDS)
    r = run_direct([MEMCPY_KINDS], server.address, dict(TUNING_MEMCPY_KINDS))
    assert r.returncode == 0 and "PASS" in r.stdout, explain(r, server)
    assert_warned(r, TUNING_MEMCPY_KINDS)


def test_good_tuning_knobs_take_effect(server, tmp_path):
    need(LANE_COPIES)
    stats = tmp_path / "stats.json"
    good = {"GPUWIRE_LANES": "2", "GPUWIRE_FLUSH_US": "1000000", "GPUWIRE_CACHE": "off", "GPUWIRE_MEMO": "off",
            "GPUWIRE_HASH_THREADS": "2", "GPUWIRE_CACHE_MIN": "2M", "GPUWIRE_CACHE_COMPRESS": "off",
            "GPUWIRE_SPIN_US": "200"}
    r = gw_run([str(LANE_COPIES), "9"], server=server.address, stats=stats, env=good)
    assert r.returncode == 0 and "PASS lane_copies" in r.stdout, explain(r, server)
    assert "is not valid" not in r.stderr, r.stderr
    assert json.loads(stats.read_text())["lanes"] == 2


# --- keepalive on every connection the client dials --------------------------

# a session with copy lanes (a 9 MiB copy each way) and NVML's own connection
LIVE_CLIENT = r"""
import ctypes, sys
cu = ctypes.CDLL("libcuda.so.1")
assert cu.cuInit(0) == 0
dev, ctx, d = ctypes.c_int(), ctypes.c_void_p(), ctypes.c_uint64()
assert cu.cuDeviceGet(ctypes.byref(dev), 0) == 0
assert cu.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) == 0
assert cu.cuCtxSetCurrent(ctx) == 0
n = 9 << 20
assert cu.cuMemAlloc_v2(ctypes.byref(d), ctypes.c_size_t(n)) == 0
def round_trip(fill):
    src, back = ctypes.create_string_buffer(fill * n, n), ctypes.create_string_buffer(n)
    assert cu.cuMemcpyHtoD_v2(d, src, ctypes.c_size_t(n)) == 0
    assert cu.cuMemcpyDtoH_v2(back, d, ctypes.c_size_t(n)) == 0
    assert back.raw == src.raw
round_trip(b"a")
nv = ctypes.CDLL("libnvidia-ml.so.1")
assert nv.nvmlInit_v2() == 0
count = ctypes.c_uint()
assert nv.nvmlDeviceGetCount_v2(ctypes.byref(count)) == 0
print("ready", flush=True)
sys.stdin.readline()
round_trip(b"b")
assert cu.cuCtxSynchronize() == 0 and nv.nvmlDeviceGetCount_v2(ctypes.byref(count)) == 0
print("ok", flush=True)
"""

SYS_PIDFD_GETFD = 438  # the same number on every architecture


def sockets_of(pid: int, port: int) -> list[socket.socket]:
    """Copies (pidfd_getfd) of process pid's TCP sockets connected to port."""
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    found = []
    try:
        for name in os.listdir(f"/proc/{pid}/fd"):
            try:
                if not os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                    continue
            except OSError:
                continue
            fd = libc.syscall(SYS_PIDFD_GETFD, pidfd, int(name), 0)
            if fd < 0:
                pytest.skip(f"pidfd_getfd is not available here: {os.strerror(ctypes.get_errno())}")
            s = socket.socket(fileno=fd)
            try:
                if s.type == socket.SOCK_STREAM and s.family in (socket.AF_INET, socket.AF_INET6) and \
                        s.getpeername()[1] == port:
                    found.append(s)
                    continue
            except OSError:
                pass
            s.close()
    finally:
        os.close(pidfd)
    return found


def test_every_client_connection_has_keepalive(server):
    if not hasattr(os, "pidfd_open"):
        pytest.skip("os.pidfd_open needs Python 3.9 on Linux 5.3")
    proc = gw_python_client(server.address, LIVE_CLIENT, env={"GPUWIRE_CACHE": "0"})
    try:
        socks = sockets_of(proc.pid, server.port)
        try:
            # the session, its 3 copy lanes and NVML's session
            assert len(socks) == 5, [s.getsockname() for s in socks]
            for s in socks:
                got = (s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                       s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
                       s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
                       s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
                       s.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT))
                assert got == (1, 30, 10, 6, 0), (s.getsockname(), got)  # no user timeout: see native/client/wire/dial.c
        finally:
            for s in socks:
                s.close()  # our copies only: the client's stay open
        # the live session goes on working over the same connections
        proc.stdin.write("go\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "ok", proc.stderr.read()
    finally:
        proc.stdin.close()
        proc.wait(30)
    assert proc.returncode == 0, proc.stderr.read()
