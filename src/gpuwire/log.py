"""Server log lines, one per event, in logfmt (the default) or JSON:

    time=2026-12-06T11:30:35.123+00:00 level=INFO msg="session start" session=3 peer=127.0.0.1:41000 pid=42
    {"time": "2026-12-06T11:30:35.123+00:00", "level": "INFO", "msg": "session start", "session": 3, ...}

The time is ISO 8601 with the UTC offset, in milliseconds. In logfmt a value
with spaces, quotes or '=' is JSON-quoted so every line splits cleanly. Text
that came from a client or a worker is stripped of control characters so it
cannot forge extra lines.
"""

from __future__ import annotations

import json
import re
import sys
import threading
from datetime import datetime
from typing import TextIO

LEVELS = {"DEBUG": 10, "INFO": 20, "WARN": 30, "ERROR": 40}
FORMATS = ("logfmt", "json")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_BARE = re.compile(r"^[A-Za-z0-9_.:/@+,\[\]%#-]+$")


def clean(text: object, limit: int = 2000) -> str:
    """Printable, single-line, bounded form of untrusted text."""
    s = _CONTROL.sub("?", str(text))
    return s if len(s) <= limit else s[:limit] + "..."


def _value(v: object) -> str:
    s = clean(v, 500)
    return s if _BARE.match(s) else json.dumps(s, ensure_ascii=False)


def timestamp(now: datetime | None = None) -> str:
    """ISO 8601 local time with its UTC offset, to the millisecond: 2026-12-06T12:30:35.123+01:00."""
    return (now or datetime.now().astimezone()).isoformat(timespec="milliseconds")


def _json_value(v: object) -> object:
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, (int, float)):
        return v if v == v and v not in (float("inf"), float("-inf")) else str(v)
    return clean(v, 500)


def format_line(fmt: str, stamp: str, level: str, message: str, session: object = None,
                fields: dict[str, object] | None = None) -> str:
    """One log line (without its newline): logfmt `time= level= msg= session= key=value...`, or JSON."""
    items = {k: v for k, v in (fields or {}).items() if v is not None}
    if fmt == "json":
        obj: dict[str, object] = {"time": stamp, "level": level, "msg": clean(message)}
        if session is not None:
            obj["session"] = _json_value(session)
        for k, v in items.items():
            if k not in obj:
                obj[k] = _json_value(v)
        return json.dumps(obj, ensure_ascii=False)
    parts = [f"time={stamp}", f"level={level}", f"msg={_msg(message)}"]
    if session is not None:
        parts.append(f"session={_value(session)}")
    parts += [f"{k}={_value(v)}" for k, v in items.items()]
    return " ".join(parts)


def _msg(message: object) -> str:
    s = clean(message)
    return s if _BARE.match(s) else json.dumps(s, ensure_ascii=False)


class Logger:
    def __init__(self, stream: TextIO | None = None, level: str = "INFO", fmt: str = "logfmt"):
        if fmt not in FORMATS:
            raise ValueError(f"log format must be {' or '.join(FORMATS)}, not {fmt!r}")
        self.stream = stream if stream is not None else sys.stderr
        self.threshold = LEVELS[level]
        self.fmt = fmt
        self._lock = threading.Lock()

    def log(self, level: str, message: str, session: object = None, **fields: object) -> None:
        if LEVELS[level] < self.threshold:
            return
        line = format_line(self.fmt, timestamp(), level, message, session, fields) + "\n"
        with self._lock:
            try:
                self.stream.write(line)
                self.stream.flush()
            except (OSError, ValueError):
                pass  # a closed log must not take the server down

    def debug(self, message: str, session: object = None, **fields: object) -> None:
        self.log("DEBUG", message, session, **fields)

    def info(self, message: str, session: object = None, **fields: object) -> None:
        self.log("INFO", message, session, **fields)

    def warn(self, message: str, session: object = None, **fields: object) -> None:
        self.log("WARN", message, session, **fields)

    def error(self, message: str, session: object = None, **fields: object) -> None:
        self.log("ERROR", message, session, **fields)
