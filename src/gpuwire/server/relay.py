"""A worker's log lines into the server's log: its prefix dropped, its level
kept, and its "cache stats:" line taken as the session's cache counters
instead of logged as news (worker_cache_figures, the one place that reads it)."""

from __future__ import annotations

import re
from typing import Callable

from gpuwire import cache as content_cache  # docs/cache.md
from gpuwire.log import Logger

_WORKER_PREFIX = re.compile(r"^worker session=\S+: ")
_LEVEL_WORDS = {"DEBUG": "DEBUG", "INFO": "INFO", "WARN": "WARN", "WARNING": "WARN", "ERROR": "ERROR",
                "FATAL": "ERROR"}


def worker_cache_figures(line: str) -> dict[str, int] | None:
    """The worker's cumulative cache counters if `line` is its "cache stats:" line, else None."""
    return content_cache.parse_stats_line(line)


def relay_line(log: Logger, sid: int, raw: bytes, on_cache: Callable[[dict[str, int]], None]) -> None:
    """Log one line the worker of session `sid` wrote; cache counters go to on_cache."""
    line = raw.decode("utf-8", "replace").rstrip("\r\n")
    line = _WORKER_PREFIX.sub("", line, count=1)  # the server's own fields already say this
    if not line.strip():
        return
    figures = worker_cache_figures(line)
    if figures is not None:  # the worker's cache counters (cumulative for its session): metrics, not log
        on_cache(figures)
        log.log("DEBUG", line, session=sid, src="worker")
        return
    level = "INFO"
    for word in line.split()[:3]:
        if word.upper().rstrip(":") in _LEVEL_WORDS:
            level = _LEVEL_WORDS[word.upper().rstrip(":")]
            break
    log.log(level, line, session=sid, src="worker")
