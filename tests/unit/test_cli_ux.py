"""What a user sees from the command line (issue 16, items 4, 6, 7): one address
syntax everywhere, one line (never a traceback) for a bad address, file or number
and for Ctrl-C, no silent stand-in behind --driver auto, --config on Python 3.10
through tomli, and logfmt/JSON log lines with an ISO 8601 time and offset."""

from __future__ import annotations

import io
import json
import re
import signal
import socket
import subprocess
import sys
import time
import types
from datetime import datetime

import pytest

from conftest import GPUWIRE, free_port, gpuwire_env

from gpuwire import address, config, runner
from gpuwire import driver as drivers
from gpuwire.log import Logger


def gw(*args, env=None, timeout=60):
    return subprocess.run(GPUWIRE + list(args), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env=gpuwire_env(env))


def one_line(r) -> str:
    err = r.stderr.strip()
    assert "Traceback" not in err, err
    assert len(err.splitlines()) == 1, err
    return err


# --- one address syntax --------------------------------------------------------------


@pytest.mark.parametrize("text, port, want", [
    ("gpu-box", 7750, ("gpu-box", 7750)),
    ("gpu-box:9", 7750, ("gpu-box", 9)),
    ("127.0.0.1", 7750, ("127.0.0.1", 7750)),
    ("[::1]", 7750, ("::1", 7750)),
    ("[fe80::1%eth0]:7752", 7750, ("fe80::1%eth0", 7752)),
    (" 10.0.0.1:80 ", 7750, ("10.0.0.1", 80)),
    (":7753", 7750, ("0.0.0.0", 7753)),
    ("localhost", 7751, ("localhost", 7751)),
])
def test_address_parse(text, port, want):
    assert address.parse(text, port) == want


@pytest.mark.parametrize("text, words", [
    ("", "empty"), ("::1", "in brackets"), ("host:", "port must be a number"), ("host:0", "from 1 to 65535"),
    ("host:65536", "from 1 to 65535"), ("localhost:notaport", "port must be a number"), ("[::1", "closing"),
    ("[::1]x", "after ']'"), ("[]:1", "between the brackets"), ("a b:1", "spaces"), ("h:1:2", "in brackets"),
])
def test_address_errors_are_one_line(text, words):
    with pytest.raises(address.AddressError) as ei:
        address.parse(text, what="--server")
    msg = str(ei.value)
    assert words in msg and msg.startswith("--server ") and "\n" not in msg, msg


def test_address_listen_allows_port_zero_and_format():
    assert address.parse("127.0.0.1:0", listen=True) == ("127.0.0.1", 0)
    assert address.format("::1", 7750) == "[::1]:7750" and address.normalize("h") == "h:7750"


def test_client_commands_do_not_import_the_server():
    code = ("import sys, gpuwire.status, gpuwire.runner, gpuwire.top, gpuwire.smi; "
            "print('gpuwire.server' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=gpuwire_env())
    assert r.stdout.strip() == "False", r.stdout + r.stderr


@pytest.mark.parametrize("value, want", [("127.0.0.1", "127.0.0.1:7750"), ("[::1]", "[::1]:7750"),
                                         ("gpu-box:7760", "gpu-box:7760")])
def test_run_spells_the_port_out_for_the_client_library(value, want):
    assert runner.server_address(None, {"GPUWIRE_SERVER": value}) == want
    assert runner.server_address(value, {}) == want


def test_status_takes_a_host_without_port():
    r = gw("status", "--json", "--rounds", "1", "--bytes", "0", env={"GPUWIRE_SERVER": "127.0.0.1"})
    assert json.loads(r.stdout)["address"] == "127.0.0.1:7750", r.stdout + r.stderr


# --- --driver auto never serves the stand-in silently -----------------------------------


def test_auto_without_a_driver_refuses(monkeypatch):
    monkeypatch.setattr(drivers, "find_nvidia", lambda: (None, "no libcuda.so.1 found"))
    with pytest.raises(drivers.DriverError) as ei:
        drivers.resolve("auto")
    assert "no working NVIDIA driver (no libcuda.so.1 found)" in str(ei.value)
    assert "--driver standin" in str(ei.value)


def test_demo_falls_back_and_says_so(monkeypatch):
    monkeypatch.setattr(drivers, "find_nvidia", lambda: (None, "no libcuda.so.1 found"))
    drv = drivers.resolve("auto", fallback=True)
    assert drv.is_standin and drv.fallback_reason == "no libcuda.so.1 found"


def test_server_with_auto_and_no_gpu_does_not_start():
    if drivers.find_nvidia()[0] is not None:
        pytest.skip("a working NVIDIA driver is here: auto serves it")
    r = gw("server", "--listen", "127.0.0.1:0", timeout=120)
    assert r.returncode == 1
    err = one_line(r)
    assert "cannot start: no working NVIDIA driver" in err and "--driver standin" in err, err


# --- one line for bad values and files, never a traceback -------------------------------


@pytest.mark.parametrize("args, words", [
    (["top", "--admin", "localhost:notaport"], "--admin 'localhost:notaport' is not valid"),
    (["top", "--once", "--server", "::1"], "--server '::1' is not valid"),
    (["top", "--once", "--interval", "nan"], "--interval must be a finite number"),
    (["top", "--once", "--interval", "-1"], "--interval must not be negative"),
    (["top", "--once", "--logs", "-3"], "--logs must not be negative"),
    (["status", "--rounds", "-1"], "--rounds must not be negative"),
    (["status", "--rounds", "0"], "--rounds must be between 1"),
    (["status", "--rounds", "x"], "argument --rounds: invalid int value: 'x'"),
    (["status", "--bytes", "lots"], "--bytes"),
    (["status", "--tls-cert", "/nope.pem"], "--tls-cert /nope.pem: no such file"),
    (["status", "--token-file", "/nope/token"], "--token-file /nope/token: no such file"),
    (["smi", "--token-file", "/nope/token"], "--token-file /nope/token: no such file"),
    (["top", "--once", "--server", "127.0.0.1:1", "--token-file", "/nope/token"], "--token-file /nope/token: no such"),
    (["run", "--token-file", "/nope/token", "--", "true"], "--token-file /nope/token: no such file"),
    (["run", "--tls-ca", "/nope/ca.pem", "--", "true"], "--tls-ca /nope/ca.pem: no such file"),
    (["run", "--gpu", "-1", "--", "true"], "--gpu must not be negative"),
    (["run", "--server", "h:0", "--", "true"], "--server 'h:0' is not valid"),
    (["cache", "prune", "--older-than-days", "nan"], "--older-than-days must be a finite number"),
    (["server", "--log-format", "xml"], "argument --log-format: invalid choice"),
    (["server", "--listen", "localhost:notaport", "--driver", "standin"], "--listen 'localhost:notaport' is not"),
    (["server", "--metrics", "[::1", "--driver", "standin"], "--metrics '[::1' is not valid"),
])
def test_user_errors_are_one_line(args, words):
    r = gw(*args)
    assert r.returncode in (1, 2), (r.returncode, r.stderr)
    err = one_line(r)
    assert words in err, err
    assert "GPUWIRE_TOKEN" not in err and "None" not in err, err


def test_token_file_missing_is_named_not_blamed_on_the_environment(tmp_path):
    """A missing token file says so, never 'set GPUWIRE_TOKEN'."""
    r = gw("status", "--token-file", str(tmp_path / "missing"), "--server", "127.0.0.1:1")
    err = one_line(r)
    assert f"--token-file {tmp_path / 'missing'}: no such file" in err, err


def test_ctrl_c_is_one_line_and_130():
    """A status probe to a port that never answers, interrupted."""
    with socket.socket() as lst:
        lst.bind(("127.0.0.1", 0))
        lst.listen(1)
        # as a terminal's foreground program gets it: SIGINT not ignored (a
        # test run started in the background, nohup or `cmd &`, ignores it,
        # and Python keeps an ignored SIGINT ignored)
        proc = subprocess.Popen(GPUWIRE + ["status", "--server", f"127.0.0.1:{lst.getsockname()[1]}"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=gpuwire_env(),
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        conn, _ = lst.accept()  # connected: it now waits for an answer
        with conn:
            time.sleep(0.5)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip() == "gpuwire status: interrupted", err


def test_top_says_where_it_reads_from():
    r = gw("top", "--once", "--admin", f"127.0.0.1:{free_port()}")
    assert r.returncode == 1
    err = one_line(r)
    assert "admin endpoint" in err and "off unless" in err and "--metrics" in err and "top --server" in err, err


def test_top_suggests_the_top_extra():
    from gpuwire import top

    assert "pip install 'gpuwire[top]'" in top.TEXTUAL_MISSING


# --- --config on Python 3.10: tomli ------------------------------------------------------


def test_config_falls_back_to_tomli(tmp_path, monkeypatch):
    try:
        import tomllib as parser
    except ModuleNotFoundError:  # Python 3.10: the real tomli, if installed
        parser = pytest.importorskip("tomli")
    fake = types.ModuleType("tomli")
    fake.load, fake.TOMLDecodeError = parser.load, parser.TOMLDecodeError
    monkeypatch.setitem(sys.modules, "tomllib", None)   # as on Python 3.10
    monkeypatch.setitem(sys.modules, "tomli", fake)
    f = tmp_path / "s.toml"
    f.write_text('[server]\nmax_sessions = 3\nlog_format = "json"\n')
    assert config.load(f) == {"max_sessions": 3, "log_format": "json"}


def test_config_without_any_toml_parser_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tomllib", None)
    monkeypatch.setitem(sys.modules, "tomli", None)
    f = tmp_path / "s.toml"
    f.write_text("[server]\n")
    with pytest.raises(config.ConfigError, match="pip install tomli"):
        config.load(f)


# --- logs: logfmt or JSON, ISO 8601 time with offset --------------------------------------


LOGFMT = re.compile(r'^time=(\S+) level=(DEBUG|INFO|WARN|ERROR) msg=("(?:[^"\\]|\\.)*"|[^\s"=]+)'
                    r'( [a-z_]+=("(?:[^"\\]|\\.)*"|[^\s"=]+))*$')


def test_logfmt_line():
    out = io.StringIO()
    Logger(out).info("session start", session=3, peer="127.0.0.1:5", host="a b", gone=None)
    Logger(out).warn("x\ny")
    first, second = out.getvalue().splitlines()
    m = LOGFMT.match(first)
    assert m, first
    assert datetime.fromisoformat(m.group(1)).utcoffset() is not None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", m.group(1)), m.group(1)
    assert first.endswith(' level=INFO msg="session start" session=3 peer=127.0.0.1:5 host="a b"'), first
    assert LOGFMT.match(second) and second.endswith('level=WARN msg="x?y"'), second


def test_json_log_line():
    out = io.StringIO()
    Logger(out, fmt="json").error("cannot start: x", session=None, port=7750, peer="p")
    obj = json.loads(out.getvalue())
    assert obj["level"] == "ERROR" and obj["msg"] == "cannot start: x" and obj["port"] == 7750
    assert "session" not in obj and datetime.fromisoformat(obj["time"]).utcoffset() is not None
    with pytest.raises(ValueError):
        Logger(out, fmt="xml")


def test_server_log_format_json(tmp_path):
    """--log-format json: every line of a server's log is a JSON object (here one that
    cannot start, and --print-config names the setting)."""
    r = gw("server", "--driver", "standin", "--listen", "127.0.0.1:0", "--log-format", "json",
           "--tls-cert", str(tmp_path / "none.pem"))
    assert r.returncode == 1
    (line,) = r.stderr.strip().splitlines()
    obj = json.loads(line)
    assert obj["level"] == "ERROR" and str(tmp_path / "none.pem") in obj["msg"], obj
    assert 'log_format = "logfmt"' in gw("server", "--print-config").stdout
    bad = tmp_path / "s.toml"
    bad.write_text('log_format = "xml"\n')
    r = gw("server", "--config", str(bad))
    assert r.returncode == 2 and "log_format must be logfmt or json" in one_line(r)
