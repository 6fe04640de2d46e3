"""The one address syntax of every gpuwire command: `HOST`, `HOST:PORT`,
`[IPV6]`, `[IPV6]:PORT`, and for listening `:PORT` (every interface).

The port defaults to 7750 (the gpuwire port), or 7751 for the admin/metrics
endpoint. The client library reads GPUWIRE_SERVER by the same rules
(clientenv.parse_server mirrors them). Standard library only, no imports
of the server: status, run, smi and top use it without loading the daemon.
"""

from __future__ import annotations

DEFAULT_PORT = 7750          # gpuwire server
DEFAULT_METRICS_PORT = 7751  # gpuwire server --metrics (the admin endpoint)
DEFAULT_SERVER = f"127.0.0.1:{DEFAULT_PORT}"
DEFAULT_METRICS = f"127.0.0.1:{DEFAULT_METRICS_PORT}"
SYNTAX = "HOST, HOST:PORT, [IPV6] or [IPV6]:PORT"


class AddressError(ValueError):
    """A malformed address; str() is one line that names it and says what is accepted."""


def _bad(text: str, why: str, what: str) -> AddressError:
    shown = "".join("?" if ord(c) < 0x20 or ord(c) == 0x7F else c for c in text[:80])
    return AddressError(f"{what} {shown!r} is not valid: {why} (expected {SYNTAX})")


def parse(text: str, default_port: int = DEFAULT_PORT, *, listen: bool = False,
          what: str = "address") -> tuple[str, int]:
    """(host, port) of `text`. An empty host (`:PORT`) means every interface,
    0.0.0.0. Port 0 (a free port) is allowed only when `listen`. Raises AddressError."""
    if not isinstance(text, str):
        raise AddressError(f"{what} must be text, not {type(text).__name__}")
    raw = text
    text = text.strip()
    if not text:
        raise _bad(raw, "it is empty", what)
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep:
            raise _bad(raw, "no closing ']'", what)
        if not host:
            raise _bad(raw, "no address between the brackets", what)
        if rest and not rest.startswith(":"):
            raise _bad(raw, f"unexpected {rest!r} after ']'", what)
        port_s = rest[1:] if rest else None
    elif text.count(":") > 1:
        raise _bad(raw, "write an IPv6 address in brackets, [ADDR]:PORT", what)
    else:
        host, sep, port_s = text.partition(":")
        port_s = port_s if sep else None
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in host):
        raise _bad(raw, "the host contains spaces or control characters", what)
    if len(host) > 255:
        raise _bad(raw, "the host is longer than 255 characters", what)
    if port_s is None:
        port = default_port
    else:
        lo = 0 if listen else 1
        if not port_s or not all("0" <= c <= "9" for c in port_s) or not lo <= int(port_s) <= 65535:
            raise _bad(raw, f"the port must be a number from {lo} to 65535", what)
        port = int(port_s)
    return host or "0.0.0.0", port


def format(host: str, port: int) -> str:  # noqa: A001 (the module's verb)
    """HOST:PORT, with an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def normalize(text: str, default_port: int = DEFAULT_PORT, *, listen: bool = False,
              what: str = "address") -> str:
    """`text` written in full (HOST:PORT or [IPV6]:PORT). Raises AddressError."""
    return format(*parse(text, default_port, listen=listen, what=what))
