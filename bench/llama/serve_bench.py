"""llama-server answering concurrent streaming requests, natively and through
gpuwire (issue 20: "llama-server answering 4 concurrent streaming requests
(tokens/s per stream and total)").

For each way it starts llama-server (``-np STREAMS``, every layer on the GPU),
waits for /health, sends one short request to warm it up, then STREAMS
streaming /completion requests at once, each with a prompt of its own (token
ids), greedy, a fixed number of tokens (``ignore_eos``). Per stream: time to
the first token, tokens/s from the first token to the last as the client saw
them, the server's own predicted_per_second, and the token ids; in total:
tokens over the wall time from the first request to the last token. Token ids
are compared stream by stream between the two ways.

    python3 bench/llama/serve_bench.py --bin DIR --model M.gguf --out OUTDIR \
        [--server HOST:PORT --nogpu PREFIX] [--ab HOST:PORT --ab-label TEXT]
        [--streams 4] [--tokens 128] [--budget S]

--ab: a second gpuwire server (the same but for one setting, e.g.
GPUWIRE_DELIVERIES=hostfn): a third way, "gpuwire-ab", run after the others.

Writes OUTDIR/serve.json and OUTDIR/serve-table.txt (printed), and each
server's log as OUTDIR/serve-<way>.log. Standard library only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

PROMPT_TOKENS = 32
WARMUP_TOKENS = 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prompt_of(stream: int, n_vocab_floor: int = 4000) -> list[int]:
    """A prompt of its own for each stream: token ids well inside any
    vocabulary the benchmark's models have (past the special and byte tokens)."""
    return [300 + (stream * 131 + i * 17) % (n_vocab_floor - 300) for i in range(PROMPT_TOKENS)]


def request(port: int, body: dict, timeout: float) -> http.client.HTTPResponse:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    c.request("POST", "/completion", body=json.dumps(body), headers={"Content-Type": "application/json"})
    r = c.getresponse()
    if r.status != 200:
        raise RuntimeError(f"/completion answered {r.status}: {r.read(300)!r}")
    return r


def stream_one(port: int, stream: int, tokens: int, timeout: float, t_start: float, out: dict) -> None:
    """One streaming request; fills out[stream] with what the client saw."""
    rec: dict = {"stream": stream, "tokens": [], "error": None}
    out[stream] = rec
    body = {"prompt": prompt_of(stream), "n_predict": tokens, "stream": True, "ignore_eos": True,
            "temperature": 0.0, "top_k": 1, "cache_prompt": False, "return_tokens": True}
    try:
        r = request(port, body, timeout)
        while True:
            line = r.readline()
            if not line:
                break
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            msg = json.loads(line[5:])
            now = time.monotonic() - t_start
            got = msg.get("tokens") or []
            if got:
                rec.setdefault("first_s", now)
                rec["last_s"] = now
                rec["tokens"] += got
            if msg.get("stop"):
                t = msg.get("timings") or {}
                rec["server_tps"] = t.get("predicted_per_second")
                rec["server_prompt_ms"] = t.get("prompt_ms")
                break
    except Exception as e:  # noqa: BLE001 - recorded, the table says which stream failed
        rec["error"] = f"{type(e).__name__}: {e}"


def wait_healthy(port: int, proc: subprocess.Popen, deadline: float) -> str | None:
    """None once /health says ok; else why not. Prints progress on long waits."""
    t0 = time.monotonic()
    said = 0.0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"llama-server exited with {proc.returncode} before it was ready"
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/health")
            r = c.getresponse()
            r.read()
            if r.status == 200:
                return None
        except OSError:
            pass
        if time.monotonic() - said > 15:
            said = time.monotonic()
            print(f"serve_bench: waiting for llama-server to load ({time.monotonic() - t0:.0f} s)", flush=True)
        time.sleep(0.25)
    return "llama-server was not ready in time"


def run_way(way: str, a: argparse.Namespace, deadline: float) -> dict:
    port = free_port()
    cmd = [str(Path(a.bin) / "llama-server"), "-m", a.model, "-ngl", "99", "-np", str(a.streams),
           "-c", str(a.streams * (PROMPT_TOKENS + a.tokens + 64)), "--host", "127.0.0.1", "--port", str(port),
           "--no-webui", "-fa", "on"]
    if way in ("gpuwire", "gpuwire-ab"):
        stats = Path(a.out) / f"serve-{way}.stats.json"
        cmd = shlex.split(a.nogpu) + [sys.executable, "-m", "gpuwire", "run", "--server",
                                      a.server if way == "gpuwire" else a.ab, "--stats", str(stats), "--"] + cmd
    log = open(Path(a.out) / f"serve-{way}.log", "wb")
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    res: dict = {"way": way, "command": " ".join(shlex.quote(c) for c in cmd)}
    try:
        why = wait_healthy(port, proc, deadline)
        res["ready_s"] = round(time.monotonic() - t0, 2)
        if why:
            res["error"] = why
            return res
        left = max(5.0, deadline - time.monotonic())
        warm: dict = {}
        stream_one(port, 99, WARMUP_TOKENS, left, time.monotonic(), warm)
        if warm[99]["error"]:
            res["error"] = "warm-up request: " + warm[99]["error"]
            return res
        got: dict = {}
        t_start = time.monotonic()
        threads = [threading.Thread(target=stream_one, args=(port, i, a.tokens, left, t_start, got))
                   for i in range(a.streams)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = max((r.get("last_s", 0.0) for r in got.values()), default=0.0)
        res["streams"] = [got[i] for i in range(a.streams)]
        for r in res["streams"]:
            n = len(r["tokens"])
            span = r.get("last_s", 0.0) - r.get("first_s", 0.0)
            # n tokens arrive over n - 1 gaps after the first
            r["client_tps"] = round((n - 1) / span, 2) if n > 1 and span > 0 else None
        total = sum(len(r["tokens"]) for r in res["streams"])
        res["total_tokens"] = total
        res["wall_s"] = round(wall, 3)
        res["total_tps"] = round(total / wall, 2) if wall > 0 else None
        errors = [f"stream {r['stream']}: {r['error']}" for r in res["streams"] if r["error"]]
        if errors:
            res["error"] = "; ".join(errors)
        return res
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        log.close()
        if way != "native":
            try:
                res["gpuwire_stats"] = json.loads((Path(a.out) / f"serve-{way}.stats.json").read_text())
            except (OSError, ValueError):
                pass


def fmt(v, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def table(res: dict) -> str:
    ways = res["ways"]
    names = [w for w in ("native", "gpuwire", "gpuwire-ab") if w in ways]
    lines = [f"llama-server, {res['streams']} concurrent streaming requests of {res['tokens']} tokens "
             f"({res['model']})", "",
             "| | " + " | ".join(names) + "".join(f" | {w}/native" for w in names[1:]) + " |",
             "|---|" + "---|" * (2 * len(names) - 1)]

    def row(label: str, vals: list, ratio: bool = True, spec: str = ".1f") -> None:
        cells = [fmt(v, spec) for v in vals]
        extra = "".join(" " + (fmt(v / vals[0], ".2f") if ratio and vals[0] and v else "") + " |" for v in vals[1:])
        lines.append(f"| {label} | " + " | ".join(cells) + " |" + extra)

    row("total tokens/s", [ways[w].get("total_tps") for w in names])
    for key, who in (("client_tps", "client"), ("server_tps", "server")):
        for i in range(res["streams"]):
            vals = []
            for w in names:
                s = ways[w].get("streams") or []
                vals.append(s[i].get(key) if i < len(s) else None)
            row(f"stream {i} tokens/s ({who})", vals)
    vals = []
    for w in names:
        s = ways[w].get("streams") or []
        firsts = [r["first_s"] * 1000 for r in s if "first_s" in r]
        vals.append(max(firsts) if firsts else None)
    row("slowest first token, ms", vals)
    row("server ready, s", [ways[w].get("ready_s") for w in names])
    if res.get("ab_label"):
        lines.append("")
        lines.append(f"gpuwire-ab: a second server with {res['ab_label']}")
    if "same_tokens" in res:
        lines.append("")
        lines.append("same token ids as native in every stream: " + ("yes" if res["same_tokens"] else
                                                                     "NO (" + res["differs"] + ")"))
    for w in names:
        if ways[w].get("error"):
            lines.append(f"{w}: {ways[w]['error']} (serve-{w}.log)")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bin", required=True, help="the folder holding llama-server and its libraries")
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--server", help="gpuwire server HOST:PORT (without it: native only)")
    p.add_argument("--nogpu", default="", help="command prefix hiding the GPU from the gpuwire client")
    p.add_argument("--streams", type=int, default=4)
    p.add_argument("--tokens", type=int, default=128)
    p.add_argument("--budget", type=float, default=240.0, help="seconds for both ways")
    p.add_argument("--ab", help="a second gpuwire server HOST:PORT, run as the way gpuwire-ab")
    p.add_argument("--ab-label", default="", help="what differs on the --ab server, for the table")
    p.add_argument("--ways", default="native,gpuwire,gpuwire-ab")
    a = p.parse_args(argv)
    Path(a.out).mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    ways = [w for w in a.ways.split(",")
            if w == "native" or (w == "gpuwire" and a.server) or (w == "gpuwire-ab" and a.server and a.ab)]
    res: dict = {"model": Path(a.model).name, "streams": a.streams, "tokens": a.tokens, "ways": {},
                 "ab_label": a.ab_label if a.ab else ""}
    for i, way in enumerate(ways):
        left = a.budget - (time.monotonic() - t0)
        # the first way may take at most its share, so the second gets its turn
        share = left / (len(ways) - i)
        if share < 20:
            res["ways"][way] = {"error": f"skipped: {share:.0f} s left"}
            continue
        res["ways"][way] = run_way(way, a, time.monotonic() + share)
        print(f"serve_bench: {way}: total {res['ways'][way].get('total_tps')} tokens/s"
              + (f" ({res['ways'][way]['error']})" if res["ways"][way].get("error") else ""), flush=True)
    n = res["ways"].get("native", {})
    diff = []
    for w in ("gpuwire", "gpuwire-ab"):
        g = res["ways"].get(w, {})
        if n.get("streams") and g.get("streams"):
            diff += [f"{w} {i}" for i, (x, y) in enumerate(zip(n["streams"], g["streams"])) if x["tokens"] != y["tokens"]]
            res["same_tokens"] = not diff
    res["differs"] = "streams " + ", ".join(diff) if diff else ""
    (Path(a.out) / "serve.json").write_text(json.dumps(res, indent=1))
    text = table(res)
    (Path(a.out) / "serve-table.txt").write_text(text)
    print(text)
    return 0 if all(not w.get("error") for w in res["ways"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
