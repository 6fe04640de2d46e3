"""`gpuwire server`'s settings are one object: every flag of `gpuwire server
--help` is a field of config.ServerConfig (and every field a flag), the
object cannot be changed once built, and the daemon takes it whole."""

import argparse
import dataclasses
import inspect

import pytest

from gpuwire import cli, config

META_FLAGS = {"help", "config", "print_config"}  # about the settings, not settings


def server_flags() -> dict[str, str]:
    """dest -> option string of every flag `gpuwire server` takes."""
    sub = next(a for a in cli.build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a.option_strings[-1] for a in sub.choices["server"]._actions if a.option_strings}


def test_every_server_flag_is_a_config_field_and_back():
    fields = {f.name for f in dataclasses.fields(config.ServerConfig)}
    flags = {dest: opt for dest, opt in server_flags().items() if dest not in META_FLAGS}
    assert set(flags) == fields, (set(flags) ^ fields)
    for dest, opt in flags.items():
        assert opt == "--" + dest.replace("_", "-")  # the config file's key is the flag's name
    assert set(config.SERVER_OPTIONS) == fields


def test_config_is_frozen_and_built_from_flags_file_and_defaults(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text('[server]\nlanes = 0\nstate_dir = "/srv/gw"\n')
    pytest.importorskip("tomllib")
    cfg = config.server_config({"max_sessions": 4, "listen": None}, f)
    assert (cfg.max_sessions, cfg.lanes, cfg.listen) == (4, 0, "127.0.0.1:7750")
    assert cfg.tokens_path == "/srv/gw/tokens.json"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lanes = 3
    assert config.server_config({}, None) == config.ServerConfig()


def test_the_daemon_takes_the_config_whole():
    from gpuwire.server import Server, run_server

    assert list(inspect.signature(run_server).parameters) == ["config", "log"]
    assert list(inspect.signature(Server).parameters)[0] == "config"
