"""The relay of a worker's log lines (server/relay.py): its prefix dropped,
its level kept, its "cache stats:" line taken as the session's counters."""

from gpuwire.log import Logger
from gpuwire.server.relay import relay_line

from control_plane import Lines  # a log stream tests can read


def relayed(*raw: bytes):
    out, figures = Lines(), []
    log = Logger(out, "DEBUG")
    for line in raw:
        relay_line(log, 7, line, figures.append)
    return out.lines(), figures


def test_levels_and_prefix():
    lines, figures = relayed(b"worker session=7: WARN: lost a lane\n", b"ERROR x\n", b"plain words\n", b"\n")
    assert len(lines) == 3 and not figures
    assert "level=WARN" in lines[0] and "worker session=7" not in lines[0] and "session=7" in lines[0]
    assert "level=ERROR" in lines[1] and "level=INFO" in lines[2] and "src=worker" in lines[2]


def test_cache_stats_line_becomes_counters():
    lines, figures = relayed(b"worker session=7: INFO cache stats: hits=3 misses=1 hit_bytes=4096\n")
    assert figures == [{"hits": 3, "misses": 1, "hit_bytes": 4096}]
    assert len(lines) == 1 and "level=DEBUG" in lines[0]
