"""A worker's log lines into the server's log: its prefix dropped, its level
kept. The worker's counters reach the server through the session-stats block
(session_stats.py), not through its log; its "cache stats:" line, written for
people, is kept at DEBUG so it is not news in every log."""

from __future__ import annotations

import re
from gpuwire.log import Logger

_WORKER_PREFIX = re.compile(r"^worker session=\S+: ")
_CACHE_LINE = re.compile(r"^(?:\w+:? )?cache stats: ")
_LEVEL_WORDS = {"DEBUG": "DEBUG", "INFO": "INFO", "WARN": "WARN", "WARNING": "WARN", "ERROR": "ERROR",
                "FATAL": "ERROR"}


def relay_line(log: Logger, sid: int, raw: bytes) -> None:
    """Log one line the worker of session `sid` wrote."""
    line = raw.decode("utf-8", "replace").rstrip("\r\n")
    line = _WORKER_PREFIX.sub("", line, count=1)  # the server's own fields already say this
    if not line.strip():
        return
    if _CACHE_LINE.search(line):
        log.log("DEBUG", line, session=sid, src="worker")
        return
    level = "INFO"
    for word in line.split()[:3]:
        if word.upper().rstrip(":") in _LEVEL_WORDS:
            level = _LEVEL_WORDS[word.upper().rstrip(":")]
            break
    log.log(level, line, session=sid, src="worker")
