"""`gpuwire server --config FILE`: TOML settings under the flags."""

import subprocess
import sys

import pytest

from conftest import GPUWIRE, gpuwire_env
from gpuwire import config

pytestmark = pytest.mark.skipif(sys.version_info < (3, 11), reason="tomllib is Python 3.11+")


def test_file_under_flags(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text('[server]\nlisten = "0.0.0.0:9000"\nmax-sessions = 4\nhandshake_timeout = 3\n'
                 'metrics = "127.0.0.1:9001"\nrequire_auth = true\n')
    got = config.resolve({"listen": "127.0.0.1:1", "max_sessions": None}, f)
    assert got["listen"] == "127.0.0.1:1"                 # flag wins
    assert got["max_sessions"] == 4 and got["handshake_timeout"] == 3.0 and got["require_auth"] is True
    assert got["driver"] == "auto" and got["queue_interval"] == 2.0    # defaults
    assert config.resolve({}, None)["listen"] == "127.0.0.1:7750"


def test_top_level_keys(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text('log_level = "DEBUG"\nlease_idle_timeout = 600\n')
    assert config.load(f) == {"log_level": "DEBUG", "lease_idle_timeout": 600.0}


@pytest.mark.parametrize("text, words", [
    ('[server]\nlisten_on = "x"\n', "unknown setting 'listen_on'"),
    ('[server]\nmax_sessions = "many"\n', "max_sessions must be int"),
    ('[server]\nmax_sessions = true\n', "max_sessions must be int"),
    ('[server]\nlog_level = "LOUD"\n', "log_level must be one of"),
    ('[server]\nqueue_interval = -1\n', "must not be negative"),
    ('listen = "a:1"\n[server]\ndriver = "auto"\n', "not both"),
    ("[server\n", "not valid TOML"),
])
def test_bad_files(tmp_path, text, words):
    f = tmp_path / "s.toml"
    f.write_text(text)
    with pytest.raises(config.ConfigError) as ei:
        config.load(f)
    assert words in str(ei.value)


def test_example_round_trips(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text(config.example())
    assert config.resolve({}, f) == config.resolve({}, None)


def test_server_command_reports_bad_config(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text("[server]\nbogus = 1\n")
    r = subprocess.run(GPUWIRE + ["server", "--config", str(f)], capture_output=True, text=True, timeout=60,
                       env=gpuwire_env())
    assert r.returncode == 2 and "unknown setting 'bogus'" in r.stderr
    r = subprocess.run(GPUWIRE + ["server", "--config", str(tmp_path / "missing.toml")], capture_output=True,
                       text=True, timeout=60, env=gpuwire_env())
    assert r.returncode == 2 and "cannot read config file" in r.stderr
    r = subprocess.run(GPUWIRE + ["server", "--print-config"], capture_output=True, text=True, timeout=60,
                       env=gpuwire_env())
    assert r.returncode == 0 and r.stdout.startswith("# gpuwire server configuration")


@pytest.mark.parametrize("args, words", [
    (["--max-sessions", "-1"], "--max-sessions: max_sessions must not be negative"),
    (["--max-sessions", "0"], "max_sessions must be between 1"),
    (["--handshake-timeout", "-5"], "handshake_timeout must not be negative"),
    (["--handshake-timeout", "nan"], "handshake_timeout must be a finite number"),
    (["--handshake-timeout", "inf"], "handshake_timeout must be a finite number"),
    (["--lease-idle-timeout", "nan"], "lease_idle_timeout must be a finite number"),
    (["--queue-interval", "0"], "queue_interval must be between"),
    (["--lanes", "99"], "lanes must be between 0 and 8"),
    (["--max-preauth", "0"], "max_preauth must be between 1"),
    (["--dead-peer-timeout", "1"], "dead_peer_timeout must be between 3"),
])
def test_bad_flags_refused_at_start(args, words):
    """Flags are held to the config file's rules: a nonsense value stops the server
    at start with one line, instead of breaking every connection later."""
    r = subprocess.run(GPUWIRE + ["server", "--driver", "standin", "--listen", "127.0.0.1:0", *args],
                       capture_output=True, text=True, timeout=60, env=gpuwire_env())
    assert r.returncode == 2, r.stderr
    assert words in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_bad_values_in_the_file_too(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text("[server]\nhandshake_timeout = nan\n")
    with pytest.raises(config.ConfigError, match="finite"):
        config.load(f)
    f.write_text("[server]\nmax_sessions = 0\n")
    with pytest.raises(config.ConfigError, match="between 1"):
        config.load(f)


def test_missing_tls_files_named(tmp_path):
    for flag in ("--tls-cert", "--tls-client-ca"):
        extra = ["--tls-cert", str(tmp_path / "c.pem")] if flag == "--tls-client-ca" else []
        r = subprocess.run(GPUWIRE + ["server", "--driver", "standin", "--listen", "127.0.0.1:0", *extra,
                                      flag, "/nonexistent.pem"], capture_output=True, text=True, timeout=60,
                           env=gpuwire_env())
        assert r.returncode == 1
        named = "/nonexistent.pem" if flag == "--tls-cert" else str(tmp_path / "c.pem")
        assert f": no such file" in r.stderr and named in r.stderr and "None" not in r.stderr, r.stderr


def test_unwritable_cache_dir_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    r = subprocess.run(GPUWIRE + ["server", "--driver", "standin", "--listen", "127.0.0.1:0", "--cache-dir",
                                  str(blocker / "cache")], capture_output=True, text=True, timeout=60,
                       env=gpuwire_env())
    assert r.returncode == 1 and "content cache folder" in r.stderr and "not usable" in r.stderr, r.stderr
