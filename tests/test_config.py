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
