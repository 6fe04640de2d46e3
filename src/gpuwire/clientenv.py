"""The GPUWIRE_* variables gpuwire's client libraries read, checked by the
rules the libraries apply (native/client/env.h and the places that use it),
so that `gpuwire run` refuses a bad value before the program starts instead
of the library saying so later. Messages match the library's, without what
it does instead (for a setting of the session: not connecting; for a tuning
knob: its default). Standard library only.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

U64_MAX = (1 << 64) - 1
LANES_MAX = 8  # GW_LANES_MAX, native/common/wire.h
SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40,
              "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
              "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
SIZE_TEXT = "digits with an optional K, M, G, T (binary) or KB, MB, GB, TB"
BOOL_WORDS = ("0", "1", "off", "on", "no", "yes", "false", "true")
BOOL_TEXT = "1 or 0 (on/off, yes/no, true/false)"
SERVER_TEXT = ("HOST, HOST:PORT or [IPV6]:PORT, port 1 to 65535, default 7750, "
               "or a comma-separated list of them (up to 8 servers)")
SERVERS_MAX = 8  # native/client/wire/servers.h GW_SERVERS_MAX
DEFAULT_PORT = 7750


def _digits(text: str) -> int | None:
    """A decimal integer written with ASCII digits only (no sign, space or prefix)."""
    return int(text) if text and all("0" <= c <= "9" for c in text) else None


def _integer(lo: int, hi: int) -> tuple[Callable[[str], bool], str]:
    def ok(v: str) -> bool:
        n = _digits(v)
        return n is not None and lo <= n <= hi
    return ok, f"an integer from {lo} to {hi}"


def parse_size(text: str) -> int | None:
    """'8G', '512MiB', '4GB' (decimal), '1048576' -> bytes, as the library reads them; None if malformed."""
    i = 0
    while i < len(text) and "0" <= text[i] <= "9":
        i += 1
    mult = SIZE_UNITS.get(text[i:].lower())
    if i == 0 or mult is None:
        return None
    n = int(text[:i]) * mult
    return n if n <= U64_MAX else None


def _size(lo: int, hi: int) -> tuple[Callable[[str], bool], str]:
    def ok(v: str) -> bool:
        n = parse_size(v)
        return n is not None and lo <= n <= hi
    if hi == U64_MAX:
        return ok, f"a size of at least {lo} byte{'' if lo == 1 else 's'}: {SIZE_TEXT}"
    return ok, f"a size from {lo} to {hi} bytes: {SIZE_TEXT}"


def _words(words: tuple[str, ...], text: str) -> tuple[Callable[[str], bool], str]:
    return (lambda v: v in words), text


def _readable(text: str) -> tuple[Callable[[str], bool], str]:
    return (lambda v: os.access(v, os.R_OK)), text


def parse_server(text: str) -> tuple[str, int] | None:
    """(host, port) as the library reads GPUWIRE_SERVER (gpuwire.address.parse's
    syntax, with a port from 1 and a host without spaces); None if malformed."""
    text = text.strip()
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            return None
        port_s = rest[1:] if rest else None
    elif text.count(":") > 1:
        return None  # a bare IPv6 address: write it as [ADDR]:PORT
    else:
        host, sep, port_s = text.partition(":")
        port_s = port_s if sep else None
    port = DEFAULT_PORT if port_s is None else _digits(port_s)
    if port is None or not 1 <= port <= 65535 or len(host) > 255:
        return None
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in host):
        return None
    return host or "0.0.0.0", port


def parse_servers(text: str) -> list[tuple[str, int]] | None:
    """GPUWIRE_SERVER as the library reads it: one server or a comma-separated
    list of up to SERVERS_MAX (docs/multi-gpu.md); None if malformed."""
    entries = text.split(",")
    if len(entries) > SERVERS_MAX:
        return None
    parsed = [parse_server(e) if e.strip() else None for e in entries]
    return None if any(p is None for p in parsed) else parsed  # type: ignore[return-value]


# Every variable with a rule, in the order they are checked. Paths and free
# text (GPUWIRE_STATS, GPUWIRE_SAMPLE, GPUWIRE_MEMO_FILE, GPUWIRE_CUBIN_KEEP,
# GPUWIRE_COMPILE_CACHE, GPUWIRE_TLS_SERVER_NAME, GPUWIRE_TOKEN) have none.
RULES: dict[str, tuple[Callable[[str], bool], str]] = {
    # settings of the session: the library does not connect
    "GPUWIRE_SERVER": (lambda v: parse_servers(v) is not None, SERVER_TEXT),
    "GPUWIRE_LEASE": _words(("shared", "exclusive"), "shared or exclusive"),
    "GPUWIRE_MEM_CAP": _size(1, U64_MAX),
    "GPUWIRE_NO_WAIT": _words(BOOL_WORDS, BOOL_TEXT),
    "GPUWIRE_GPU": _integer(0, 65535),
    "GPUWIRE_GPUS": _integer(1, 65535),
    "GPUWIRE_TLS": _words(("auto",) + BOOL_WORDS, "auto, " + BOOL_TEXT),
    "GPUWIRE_TLS_CA": _readable("a readable file or folder"),
    "GPUWIRE_TLS_CERT": _readable("a readable file"),
    "GPUWIRE_TLS_KEY": _readable("a readable file"),
    # tuning and diagnostics: the library warns and keeps its default
    "GPUWIRE_LANES": _integer(0, LANES_MAX),
    "GPUWIRE_FLUSH_US": _integer(0, 1_000_000),
    "GPUWIRE_EAGER_FLUSH_US": _integer(0, 1_000_000),
    "GPUWIRE_SPIN_US": _integer(0, 1_000_000),
    "GPUWIRE_CACHE": _words(BOOL_WORDS, BOOL_TEXT),
    "GPUWIRE_CACHE_MIN": _size(0, 1 << 40),
    "GPUWIRE_CACHE_MIN_IMAGE": _size(0, 1 << 40),
    "GPUWIRE_HASH_THREADS": _integer(0, 32),
    "GPUWIRE_CACHE_COMPRESS": _words(("off", "auto", "on"), "auto, on or off"),
    "GPUWIRE_MEMO": _words(BOOL_WORDS, BOOL_TEXT),
    "GPUWIRE_LANDINGS": _words(BOOL_WORDS, BOOL_TEXT),
    "GPUWIRE_CUBIN_INFO": _words(BOOL_WORDS, BOOL_TEXT),
    "GPUWIRE_DEBUG": _integer(0, 9),
    "GPUWIRE_TRACE_RT": _integer(0, 2),
    "GPUWIRE_SAMPLE_US": _integer(100, 1_000_000),
    "GPUWIRE_HANDSHAKE_TIMEOUT": _integer(1, 3600),
    "GPUWIRE_PROGRESS": _words(("auto",) + BOOL_WORDS + ("force",), "auto, force or " + BOOL_TEXT),
}


def shown(value: str) -> str:
    """The value as the library prints it: one line, at most 80 characters."""
    line = "".join("?" if ord(c) < 0x20 or ord(c) == 0x7F else c for c in value[:80])
    return line + ("..." if len(value) > 80 else "")


def problem(name: str, value: str | None) -> str | None:
    """The message for a bad value of `name`, or None (unset and empty values are the defaults)."""
    if not value or name not in RULES:
        return None
    ok, accepted = RULES[name]
    return None if ok(value) else f"{name}={shown(value)} is not valid: expected {accepted}"


def check(env: Mapping[str, str]) -> None:
    """Raises ValueError with one line for the first bad variable in env."""
    for name in RULES:
        msg = problem(name, env.get(name))
        if msg:
            raise ValueError(msg)
    if env.get("GPUWIRE_TLS_KEY") and not env.get("GPUWIRE_TLS_CERT"):
        raise ValueError("GPUWIRE_TLS_KEY is set without GPUWIRE_TLS_CERT")
    token_file = env.get("GPUWIRE_TOKEN_FILE")
    if token_file and not os.access(token_file, os.R_OK):
        raise ValueError(f"GPUWIRE_TOKEN_FILE={shown(token_file)} is not valid: expected a readable file")
