"""`gpuwire top`: a live view of a gpuwire server.

It reads the JSON snapshot of the server's admin endpoint
(`gpuwire server --metrics HOST:PORT`, path /status.json, which also carries
recent log lines), or, with --server, asks the gpuwire port itself through a
status probe (no logs then; a token if the server requires one). The terminal
UI needs the optional package `textual`; `--once` prints a text snapshot
with the standard library alone.
"""

from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request

from gpuwire import address
from gpuwire.status import StatusError, _age, _bytes, gpu_line, lease_lines, probe

DEFAULT_ADMIN = address.DEFAULT_METRICS
TEXTUAL_MISSING = ("gpuwire top: the terminal UI needs the Python package `textual`, which is not installed: "
                   "pip install 'gpuwire[top]' (or pip install textual); `gpuwire top --once` prints a text "
                   "snapshot without it")


def admin_address(text: str) -> str:
    """--admin as HOST:PORT (default port 7751); an http:// prefix and a trailing / are allowed.
    Raises address.AddressError."""
    bare = text.strip()
    if bare.lower().startswith("http://"):
        bare = bare[len("http://"):]
    bare = bare.rstrip("/")
    return address.normalize(bare, address.DEFAULT_METRICS_PORT, what="--admin")


class Source:
    """Where snapshots come from: the admin endpoint, or a status probe."""

    def __init__(self, admin: str | None, server: str | None, token: str | None, logs: int = 500):
        self.admin = admin
        self.server = server
        self.token = token
        self.logs = logs

    @property
    def name(self) -> str:
        return f"gpuwire server {self.server} (status probe)" if self.server else f"admin http://{self.admin}"

    def fetch(self) -> dict:
        if self.server:
            return probe(self.server, self.token, rounds=1, bw_bytes=0)["status"]
        url = f"http://{self.admin}"
        try:
            with urllib.request.urlopen(f"{url}/status.json?logs={self.logs}", timeout=5) as r:
                return json.loads(r.read())
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise StatusError(f"cannot read {url}/status.json: {getattr(e, 'reason', None) or e}. gpuwire top reads "
                              f"the server's admin endpoint, which is off unless the server runs with "
                              f"`gpuwire server --metrics {self.admin}`; or read the gpuwire port itself: "
                              f"gpuwire top --server HOST:PORT") from e


SESSION_COLUMNS = ("id", "state", "host", "pid", "program", "lease", "gpus", "mem cap", "gpu mem", "in", "out",
                   "in/s", "out/s", "calls", "calls/s", "rtt", "idle", "tls", "age")


def _per_s(v: float | None) -> str:
    return "-" if v is None else f"{_bytes(v)}/s"


def _count(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.0f}" if v < 10000 else f"{v / 1000:.1f}k" if v < 1e7 else f"{v / 1e6:.1f}M"


def session_rows(snap: dict) -> list[tuple[str, ...]]:
    rows = []
    for s in snap.get("sessions", []):
        rtt = s.get("rtt_s")
        rows.append((str(s["id"]), s["state"], s.get("host") or s["peer"], str(s.get("pid") or "-"),
                     s.get("prog") or "-", s.get("lease") or "-",
                     ",".join(map(str, s["gpus"])) if s.get("gpus") is not None else "-",
                     _bytes(s["mem_cap"]) if s.get("mem_cap") else "-",
                     _bytes(s["gpu_memory"]) if s.get("gpu_memory") is not None else "-",
                     _bytes(s["bytes_in"]) if "bytes_in" in s else "-",
                     _bytes(s["bytes_out"]) if "bytes_out" in s else "-",
                     _per_s(s.get("bytes_in_per_s")), _per_s(s.get("bytes_out_per_s")),
                     _count(s.get("calls")), _count(s.get("calls_per_s")),
                     f"{rtt * 1e3:.2f}ms" if rtt is not None else "-",
                     (f"busy {_age(s['busy_s'])} in {s.get('busy_call', '?')}" if s.get("busy_s") is not None else
                      _age(s.get("idle_s")) if "idle_s" in s else "-"),
                     (s.get("tls") or {}).get("version") or "-", _age(s.get("age_s"))))
    return rows


def cache_hit_rate(snap: dict) -> float | None:
    """Hits over lookups of the content cache (docs/cache.md), None without lookups."""
    t = (snap.get("cache") or {}).get("totals") or {}
    n = t.get("hits", 0) + t.get("misses", 0)
    return t.get("hits", 0) / n if n else None


def summary_line(snap: dict) -> str:
    srv, drv, tot = snap.get("server", {}), snap.get("driver", {}), snap.get("totals", {})
    refused = sum(tot.get("refused", {}).values())
    text = (f"gpuwire {srv.get('version')} on {srv.get('address')}  up {_age(srv.get('uptime_s'))}  "
            f"driver {drv.get('desc') or drv.get('kind')}  auth {'tokens' if srv.get('auth') else 'off'}"
            f"{'  tls ' + srv['tls'] if srv.get('tls') else ''}  |  "
            f"sessions {tot.get('sessions_active', 0)} active, {tot.get('sessions_started', 0)} total  "
            f"queued {tot.get('queued', 0)}  refused {refused}  "
            f"in {_bytes(tot.get('bytes_in'))}  out {_bytes(tot.get('bytes_out'))}")
    if "calls" in tot:
        text += (f"  |  calls {_count(tot['calls'])}, {_count(tot.get('calls_per_s'))}/s  "
                 f"net in {_per_s(tot.get('bytes_in_per_s'))} out {_per_s(tot.get('bytes_out_per_s'))}")
    rate = cache_hit_rate(snap)
    if rate is not None or (snap.get("cache") or {}).get("dir"):
        text += f"  cache hits {'-' if rate is None else f'{rate * 100:.0f}%'}"
    return text


def render_text(snap: dict, logs: int = 20) -> str:
    """A plain-text snapshot (gpuwire top --once)."""
    out = [summary_line(snap), "", "GPUs"]
    out += [f"  {gpu_line(g)}" for g in snap.get("gpus", [])] or ["  (none)"]
    ll = lease_lines(snap.get("leases", {}))
    out += ["", f"Leases: {ll[0]}"] + ll[1:]
    rows = session_rows(snap)
    out += ["", "Sessions"]
    if rows:
        table = [SESSION_COLUMNS] + rows
        widths = [max(len(r[i]) for r in table) for i in range(len(SESSION_COLUMNS))]
        out += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in table]
    else:
        out.append("  (none)")
    if logs and snap.get("logs"):
        out += ["", f"Log (last {min(logs, len(snap['logs']))} lines)"]
        out += [f"  {ln}" for ln in snap["logs"][-logs:]]
    return "\n".join(out) + "\n"


def build_app(source: Source, interval: float):
    """The Textual app (raises ImportError without textual)."""
    from textual.app import App, ComposeResult
    from textual.containers import Vertical
    from textual.widgets import DataTable, Footer, Header, Log, Static

    class Top(App):
        TITLE = "gpuwire top"
        CSS = """
        #summary { height: auto; padding: 0 1; background: $boost; }
        #gpus { height: auto; max-height: 10; }
        #leases { height: auto; max-height: 8; padding: 0 1; }
        #sessions { height: 1fr; min-height: 6; }
        #log { height: 1fr; min-height: 6; border-top: solid $accent; }
        """
        BINDINGS = [("q", "quit", "Quit"), ("r", "refresh", "Refresh now"), ("f", "follow", "Follow log")]

        def compose(self) -> ComposeResult:
            yield Header(show_clock=True)
            with Vertical():
                yield Static("connecting...", id="summary")
                yield DataTable(id="gpus", cursor_type="row")
                yield Static("", id="leases")
                yield DataTable(id="sessions", cursor_type="row")
                yield Log(id="log", highlight=False, max_lines=5000)
            yield Footer()

        def on_mount(self) -> None:
            self.sub_title = source.name
            self.query_one("#gpus", DataTable).add_columns("GPU", "name", "memory used", "memory total", "busy",
                                                           "temp")
            self.query_one("#sessions", DataTable).add_columns(*SESSION_COLUMNS)
            self._log_seen: list[str] = []
            self.set_interval(interval, self.action_refresh)
            self.call_later(self.action_refresh)

        async def action_refresh(self) -> None:
            import asyncio

            try:
                snap = await asyncio.to_thread(source.fetch)
            except StatusError as e:
                self.query_one("#summary", Static).update(f"[red]{e}[/red]  (retrying every {interval:g} s)")
                return
            self.show(snap)

        def action_follow(self) -> None:
            self.query_one("#log", Log).scroll_end(animate=False)

        def show(self, snap: dict) -> None:
            self.query_one("#summary", Static).update(summary_line(snap) + f"\nupdated {time.strftime('%H:%M:%S')}")
            gt = self.query_one("#gpus", DataTable)
            gt.clear()
            for g in snap.get("gpus", []):
                gt.add_row(str(g["index"]), g.get("name") or "?",
                           _bytes(g["memory_used"]) if "memory_used" in g else "-",
                           _bytes(g["memory_total"]) if "memory_total" in g else "-",
                           f"{g['utilization'] * 100:.0f}%" if "utilization" in g else "-",
                           f"{g['temperature_c']} C" if "temperature_c" in g else "-")
            self.query_one("#leases", Static).update("Leases: " + "\n".join(lease_lines(snap.get("leases", {}))))
            st = self.query_one("#sessions", DataTable)
            st.clear()
            for row in session_rows(snap):
                st.add_row(*row)
            lines = snap.get("logs") or []
            log = self.query_one("#log", Log)
            # append only lines not shown yet (the tail overlaps the previous one)
            overlap = 0
            seen = self._log_seen
            for k in range(min(len(seen), len(lines)), 0, -1):
                if seen[-k:] == lines[:k]:
                    overlap = k
                    break
            new = lines[overlap:]
            if new:
                log.write_lines(new)
            self._log_seen = lines

    return Top()


def run_tui(source: Source, interval: float) -> int:
    try:
        app = build_app(source, interval)
    except ImportError:
        print(TEXTUAL_MISSING, file=sys.stderr)
        return 1
    app.run()
    return 0


def main(admin: str | None, server: str | None, token_file: str | None, once: bool, interval: float,
         logs: int) -> int:
    from gpuwire.auth import AuthError, client_token

    servers = [x.strip() for x in server.split(",")] if server else []
    if len(servers) > 1 and not once:
        print("gpuwire top: the live view follows one server; with a list (a,b, as `gpuwire run` takes it) "
              "use --once, or run one `gpuwire top --server HOST:PORT` per server", file=sys.stderr)
        return 2
    try:
        admin = admin_address(admin or DEFAULT_ADMIN)
        servers = [address.normalize(x, what="--server") for x in servers]
        server = servers[0] if servers else None
    except address.AddressError as e:
        print(f"gpuwire top: {e}", file=sys.stderr)
        return 2
    try:
        token = client_token(token_file=token_file) if server else None
    except AuthError as e:
        print(f"gpuwire top: {e}", file=sys.stderr)
        return 1
    if len(servers) > 1:  # --once over a list: each server in list order
        failed = 0
        for i, one in enumerate(servers):
            sys.stdout.write(("\n" if i else "") + f"== server {i} of the list ({one})\n")
            try:
                sys.stdout.write(render_text(Source(admin, one, token, logs=logs).fetch(), logs))
            except StatusError as e:
                print(f"gpuwire top: {one}: {e}", file=sys.stderr)
                failed = 1
        return failed
    source = Source(admin, server, token, logs=max(logs, 500) if not once else logs)
    if once:
        try:
            snap = source.fetch()
        except StatusError as e:
            print(f"gpuwire top: {e}", file=sys.stderr)
            return 1
        sys.stdout.write(render_text(snap, logs))
        return 0
    return run_tui(source, interval)
