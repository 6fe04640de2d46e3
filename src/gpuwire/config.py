"""`gpuwire server --config FILE`: a TOML file with the same settings as the flags.

Keys are the flag names without the leading dashes (dashes or underscores),
at top level or in a [server] table. A flag given on the command line wins over
the file, the file over the defaults. Unknown keys and wrong types are errors,
so a typo cannot silently leave a setting at its default.
"""

from __future__ import annotations

import sys
from pathlib import Path

LOG_LEVELS = ("DEBUG", "INFO", "WARN", "ERROR")

# name -> (type, default)
SERVER_OPTIONS: dict[str, tuple[type, object]] = {
    "listen": (str, "127.0.0.1:7750"),
    "driver": (str, "auto"),
    "max_sessions": (int, 256),
    "handshake_timeout": (float, 10.0),
    "log_level": (str, "INFO"),
    "metrics": (str, None),
    "state_dir": (str, None),
    "tokens_file": (str, None),
    "require_auth": (bool, False),
    "insecure_no_auth": (bool, False),
    "lease_idle_timeout": (float, 0.0),
    "queue_interval": (float, 2.0),
    "cache_dir": (str, None),          # the content cache (docs/cache.md); "off": none
    "cache_max_bytes": (str, "64G"),
    "lanes": (int, 3),                 # extra connections per session for copy bytes (docs/protocol.md)
    "tls_cert": (str, None),
    "tls_key": (str, None),
    "tls_client_ca": (str, None),
    "require_tls": (bool, False),
    "insecure_no_tls": (bool, False),
}


class ConfigError(Exception):
    pass


def _check(name: str, value: object, path: Path) -> object:
    typ = SERVER_OPTIONS[name][0]
    if name == "cache_max_bytes" and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # a plain byte count is fine too
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise ConfigError(f"{path}: {name} must be {typ.__name__}, got {type(value).__name__} {value!r}")
    if name == "log_level" and value not in LOG_LEVELS:
        raise ConfigError(f"{path}: log_level must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
    if typ in (int, float) and value < 0:
        raise ConfigError(f"{path}: {name} must not be negative")
    return value


def load(path: str | Path) -> dict[str, object]:
    """The settings in a TOML file (only those it sets). Raises ConfigError."""
    path = Path(path).expanduser()
    try:
        import tomllib
    except ModuleNotFoundError:
        raise ConfigError(f"--config needs Python 3.11 or newer (tomllib); this is Python "
                          f"{sys.version_info.major}.{sys.version_info.minor}: use flags instead") from None
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror or e}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path} is not valid TOML: {e}") from e
    table = data.get("server", {}) if "server" in data else data
    if "server" in data and len(data) > 1:
        raise ConfigError(f"{path}: settings go in the [server] table or at top level, not both "
                          f"(found {', '.join(sorted(k for k in data if k != 'server'))})")
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [server] must be a table")
    out: dict[str, object] = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in SERVER_OPTIONS:
            raise ConfigError(f"{path}: unknown setting {key!r} (known: {', '.join(SERVER_OPTIONS)})")
        out[name] = _check(name, value, path)
    return out


def resolve(flags: dict[str, object], path: str | Path | None) -> dict[str, object]:
    """Every server setting: flags (None = not given) over the file over defaults."""
    from_file = load(path) if path else {}
    out = {}
    for name, (_typ, default) in SERVER_OPTIONS.items():
        given = flags.get(name)
        out[name] = given if given is not None else from_file.get(name, default)
    return out


def example() -> str:
    """A commented config file with every setting at its default (docs and --print-config)."""
    lines = ["# gpuwire server configuration (flags of the same name override these)", "[server]"]
    for name, (_typ, default) in SERVER_OPTIONS.items():
        if default is None:
            lines.append(f"# {name} = \"...\"")
        elif isinstance(default, bool):
            lines.append(f"{name} = {'true' if default else 'false'}")
        elif isinstance(default, str):
            lines.append(f'{name} = "{default}"')
        else:
            lines.append(f"{name} = {default}")
    return "\n".join(lines) + "\n"
