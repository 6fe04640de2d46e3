"""`gpuwire run`: the environment it sets and the exit status it passes through."""

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import GPUWIRE, gpuwire_env
from gpuwire import paths, runner

AUDIT = Path("/opt/gw/_native/gpuwire_audit.so")
NATIVE = Path("/opt/gw/_native")


def env_for(base, **kw):
    return runner.build_env(base, native_dir=NATIVE, audit=AUDIT, **kw)


def test_env_defaults():
    env = env_for({"PATH": "/bin"})
    assert env["LD_AUDIT"] == str(AUDIT)
    assert env["GPUWIRE_LIBDIR"] == str(NATIVE)
    assert env["GPUWIRE_SERVER"] == "127.0.0.1:7750"
    assert "GPUWIRE_STATS" not in env and env["PATH"] == "/bin"


def test_env_points_triton_at_gpuwires_libcuda():
    # Triton links its launchers against the libcuda.so it finds on disk
    assert env_for({})["TRITON_LIBCUDA_PATH"] == str(NATIVE)
    assert env_for({"TRITON_LIBCUDA_PATH": "/mine"})["TRITON_LIBCUDA_PATH"] == "/mine"
    assert (paths.native_dir() / "libcuda.so").exists() or not (paths.native_dir() / "libcuda.so.1").exists()


def test_env_appends_to_ld_audit_once():
    env = env_for({"LD_AUDIT": "/other/audit.so"})
    assert env["LD_AUDIT"] == f"/other/audit.so:{AUDIT}"
    assert env_for(env)["LD_AUDIT"] == env["LD_AUDIT"]


def test_server_precedence():
    assert env_for({"GPUWIRE_SERVER": "a:1"})["GPUWIRE_SERVER"] == "a:1"
    assert env_for({"GPUWIRE_SERVER": "a:1"}, server="b:2")["GPUWIRE_SERVER"] == "b:2"
    with pytest.raises(ValueError):
        env_for({}, server="a:b")


def test_stats_path_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert env_for({}, stats="s.json")["GPUWIRE_STATS"] == str(tmp_path / "s.json")


def test_missing_natives_message(monkeypatch, tmp_path):
    monkeypatch.setattr(paths, "NATIVE_DIR", tmp_path / "_native")
    with pytest.raises(paths.NativeMissing, match=r"scripts/setup"):
        paths.audit_module()


def gw(args, **kw):
    return subprocess.run(GPUWIRE + ["run", *args], capture_output=True, text=True, timeout=60,
                          env=gpuwire_env(kw.pop("env", None)), **kw)


def test_no_command():
    r = gw([])
    assert r.returncode == 2 and "no command" in r.stderr


def test_exit_status_passes_through():
    paths.audit_module()  # needs the built audit module (./scripts/setup)
    r = gw(["--", "sh", "-c", "exit 7"])
    assert r.returncode == 7, r.stderr


def test_command_not_found():
    paths.audit_module()
    r = gw(["--", "gpuwire-no-such-command"])
    assert r.returncode == 127
    assert "gpuwire-no-such-command: command not found" in r.stderr


def test_environment_reaches_command(tmp_path):
    audit = paths.audit_module()
    r = gw(["--server", "gpu-box:7751", "--stats", str(tmp_path / "st.json"), "--", sys.executable, "-c",
            "import os; print(os.environ['LD_AUDIT']); print(os.environ['GPUWIRE_LIBDIR']);"
            "print(os.environ['GPUWIRE_SERVER']); print(os.environ['GPUWIRE_STATS'])"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [str(audit), str(paths.native_dir()), "gpu-box:7751",
                                     str(tmp_path / "st.json")]


def test_command_gets_default_sigpipe():
    paths.audit_module()
    r = gw(["--", "sh", "-c", "grep SigIgn /proc/self/status"])
    assert r.returncode == 0, r.stderr
    ignored = int(r.stdout.split()[1], 16)
    assert not ignored & (1 << (13 - 1)), "SIGPIPE is ignored in the command"
