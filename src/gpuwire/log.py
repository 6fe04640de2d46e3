"""Server log lines: one line each, `time level session=ID key=value... message`.

Values with spaces, quotes or '=' are JSON-quoted so every line splits cleanly.
Text that came from a client or a worker is stripped of control characters so
it cannot forge extra lines.
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from typing import TextIO

LEVELS = {"DEBUG": 10, "INFO": 20, "WARN": 30, "ERROR": 40}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_BARE = re.compile(r"^[A-Za-z0-9_.:/@+,\[\]%#-]+$")


def clean(text: object, limit: int = 2000) -> str:
    """Printable, single-line, bounded form of untrusted text."""
    s = _CONTROL.sub("?", str(text))
    return s if len(s) <= limit else s[:limit] + "..."


def _value(v: object) -> str:
    s = clean(v, 500)
    return s if _BARE.match(s) else json.dumps(s, ensure_ascii=False)


class Logger:
    def __init__(self, stream: TextIO | None = None, level: str = "INFO"):
        self.stream = stream if stream is not None else sys.stderr
        self.threshold = LEVELS[level]
        self._lock = threading.Lock()

    def log(self, level: str, message: str, session: object = None, **fields: object) -> None:
        if LEVELS[level] < self.threshold:
            return
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"
        parts = [stamp, level, f"session={_value(session) if session is not None else '-'}"]
        parts += [f"{k}={_value(v)}" for k, v in fields.items() if v is not None]
        parts.append(clean(message))
        line = " ".join(parts) + "\n"
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
