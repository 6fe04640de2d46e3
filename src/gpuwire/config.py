"""`gpuwire server --config FILE`: a TOML file with the same settings as the flags.

Keys are the flag names without the leading dashes (dashes or underscores),
at top level or in a [server] table. A flag given on the command line wins over
the file, the file over the defaults. Unknown keys and wrong types are errors,
so a typo cannot silently leave a setting at its default.
"""

from __future__ import annotations

import math
import os
import sys
import typing
from dataclasses import dataclass, fields
from pathlib import Path

LOG_LEVELS = ("DEBUG", "INFO", "WARN", "ERROR")
LOG_FORMATS = ("logfmt", "json")
TOKENS_FILE = "tokens.json"  # its name in --state-dir (auth.TOKENS_FILE)


@dataclass(frozen=True)
class ServerConfig:
    """Every setting of `gpuwire server`, one field per flag (the flag's name with
    underscores), at its default. The CLI builds one from flags, config file and
    defaults (server_config); the daemon only reads it."""
    listen: str = "127.0.0.1:7750"
    driver: str = "auto"
    max_sessions: int = 256
    handshake_timeout: float = 10.0
    log_level: str = "INFO"
    log_format: str = "logfmt"           # or json (log.py)
    metrics: str | None = None
    state_dir: str | None = None
    tokens_file: str | None = None
    require_auth: bool = False
    insecure_no_auth: bool = False
    max_preauth: int = 128               # connections not yet authenticated, in all (docs/security.md)
    max_preauth_per_peer: int = 16       # ... and from one peer address
    dead_peer_timeout: float = 90.0      # TCP keepalive: a silent peer's connection ends after this
    lease_idle_timeout: float = 3600.0
    client_stall_timeout: float = 60.0   # a client that reads nothing this long while a reply waits: ended
    busy_report_after: float = 30.0      # a call running this long is named in the log (again at each doubling)
    queue_interval: float = 2.0
    cache_dir: str | None = None         # the content cache (docs/cache.md); "off": none
    cache_max_bytes: str = "64G"
    cache_scope: str = "shared"          # "tenant": one cache per token (docs/cache.md)
    lanes: int = 3                       # extra connections per session for copy bytes (docs/protocol.md)
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    require_tls: bool = False
    insecure_no_tls: bool = False

    @property
    def tokens_path(self) -> str | None:
        """--tokens-file, else the tokens file in --state-dir; None: the default state folder's."""
        if self.tokens_file:
            return self.tokens_file
        return os.path.join(str(self.state_dir), TOKENS_FILE) if self.state_dir else None


def _setting_type(hint) -> type:
    """str for `str | None`, else the type itself."""
    return next(t for t in typing.get_args(hint) if t is not type(None)) if typing.get_args(hint) else hint


# name -> (type, default), in the order of ServerConfig's fields
SERVER_OPTIONS: dict[str, tuple[type, object]] = {
    f.name: (_setting_type(typing.get_type_hints(ServerConfig)[f.name]), f.default) for f in fields(ServerConfig)}


# name -> (lowest, highest) for numbers; a value outside is refused at start, never
# taken as something else later (a negative timeout or session count broke every connection).
LIMITS: dict[str, tuple[float, float]] = {
    "max_sessions": (1, 1 << 20),
    "handshake_timeout": (0.1, 3600.0),
    "max_preauth": (1, 1 << 20),
    "max_preauth_per_peer": (1, 1 << 20),
    "dead_peer_timeout": (3.0, 86400.0),
    "lease_idle_timeout": (0.0, 365 * 86400.0),   # 0: off
    "client_stall_timeout": (0.0, 86400.0),       # 0: off
    "busy_report_after": (0.0, 86400.0),          # 0: off
    "queue_interval": (0.1, 3600.0),
    "lanes": (0, 8),
}


class ConfigError(Exception):
    pass


def _check(name: str, value: object, path: Path | str) -> object:
    """The value if it is of the setting's type and within its limits; else ConfigError
    naming where it came from (a file, or the flag)."""
    typ = SERVER_OPTIONS[name][0]
    if name == "cache_max_bytes" and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)  # a plain byte count is fine too
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise ConfigError(f"{path}: {name} must be {typ.__name__}, got {type(value).__name__} {value!r}")
    if name == "cache_scope" and value not in ("shared", "tenant"):
        raise ConfigError(f"{path}: cache_scope must be shared or tenant, got {value!r}")
    if name == "log_level" and value not in LOG_LEVELS:
        raise ConfigError(f"{path}: log_level must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
    if name == "log_format" and value not in LOG_FORMATS:
        raise ConfigError(f"{path}: log_format must be logfmt or json, got {value!r}")
    if typ is float and not math.isfinite(value):
        raise ConfigError(f"{path}: {name} must be a finite number, got {value!r}")
    if typ in (int, float) and value < 0:
        raise ConfigError(f"{path}: {name} must not be negative, got {value!r}")
    lo, hi = LIMITS.get(name, (None, None))
    if lo is not None and not lo <= value <= hi:
        raise ConfigError(f"{path}: {name} must be between {lo:g} and {hi:g}, got {value!r}")
    return value


def toml_module():
    """tomllib (Python 3.11+), else the tomli package (the same parser, for 3.10); ConfigError if neither."""
    try:
        import tomllib
        return tomllib
    except ModuleNotFoundError:
        pass
    try:
        import tomli
        return tomli
    except ModuleNotFoundError:
        raise ConfigError(f"reading a --config file needs Python 3.11 or newer (tomllib) or, on Python "
                          f"{sys.version_info.major}.{sys.version_info.minor}, the package tomli: pip install "
                          f"tomli (or give the settings as flags)") from None


def load(path: str | Path) -> dict[str, object]:
    """The settings in a TOML file (only those it sets). Raises ConfigError."""
    path = Path(path).expanduser()
    tomllib = toml_module()
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
        if given is not None:  # flags are held to the same rules as the file
            given = _check(name, given, "--" + name.replace("_", "-"))
        out[name] = given if given is not None else from_file.get(name, default)
    return out


def server_config(flags: dict[str, object], path: str | Path | None) -> ServerConfig:
    """The server's settings as one object: flags over the file over defaults. Raises ConfigError."""
    return ServerConfig(**resolve(flags, path))


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
