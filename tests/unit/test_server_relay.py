"""The relay of a worker's log lines (server/relay.py): its prefix dropped,
its level kept, its "cache stats:" line (for people: the counters travel in
the session-stats block) kept at DEBUG."""

from gpuwire.log import Logger
from gpuwire.server.relay import relay_line

from control_plane import Lines  # a log stream tests can read


def relayed(*raw: bytes):
    out = Lines()
    log = Logger(out, "DEBUG")
    for line in raw:
        relay_line(log, 7, line)
    return out.lines()


def test_levels_and_prefix():
    lines = relayed(b"worker session=7: WARN: lost a lane\n", b"ERROR x\n", b"plain words\n", b"\n")
    assert len(lines) == 3
    assert "level=WARN" in lines[0] and "worker session=7" not in lines[0] and "session=7" in lines[0]
    assert "level=ERROR" in lines[1] and "level=INFO" in lines[2] and "src=worker" in lines[2]


def test_cache_stats_line_is_debug():
    lines = relayed(b"worker session=7: INFO cache stats: hits=3 misses=1 hit_bytes=4096\n")
    assert len(lines) == 1 and "level=DEBUG" in lines[0]


def test_cache_figures_come_from_the_stats_block():
    from gpuwire import cache, session_stats
    assert all(f"cas_{k}" in session_stats.FIELDS for k in cache.STAT_FIELDS)
    work = {f"cas_{k}": 0 for k in cache.STAT_FIELDS} | {"cas_hits": 3, "cas_hit_bytes": 4096, "requests": 9}
    figures = cache.session_figures(work)
    assert figures["hits"] == 3 and figures["hit_bytes"] == 4096 and figures["misses"] == 0
    assert set(figures) == set(cache.STAT_FIELDS)
    assert cache.session_figures({f"cas_{k}": 0 for k in cache.STAT_FIELDS}) == {} == cache.session_figures(None)
