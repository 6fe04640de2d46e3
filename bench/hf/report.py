"""The pure part of tests/gpu/hf-run (issue 20, Hugging Face generate): reading
bench/hf_generate.py's result line, the summary (gpuwire against native per attention
choice, whether the generated ids match, round trips per token as the slope between two
--exact runs) and the markdown table. No torch, no GPU, no subprocess: bench/hf/run.py
runs things, this reads what they left.

A run record (what run.py keeps per run): {"rc", "timed_out", "wall_s", "result": the
result line as a dict or None, "stats": gpuwire's client statistics or None}."""

from __future__ import annotations

import json

BENCH = "hf_generate"
TARGET_RATIO = 0.95      # issue 20: at least 95% of native tokens/s
TARGET_RT_PER_TOKEN = 2  # issue 20: at most 2 round trips per generated token


def result_line(stdout: str) -> dict | None:
    """The last stdout line that is hf_generate's JSON result (libraries may print before it)."""
    for ln in reversed(stdout.splitlines()):
        ln = ln.strip()
        if not ln.startswith("{"):
            continue
        try:
            d = json.loads(ln)
        except json.JSONDecodeError:
            continue
        if isinstance(d, dict) and d.get("bench") == BENCH:
            return d
    return None


def ok(run: dict | None) -> bool:
    return bool(run) and run.get("rc") == 0 and not run.get("timed_out") and bool(run.get("result")) \
        and "error" not in run["result"]


def round_trips(run: dict | None) -> int | None:
    s = (run or {}).get("stats") or {}
    v = s.get("round_trips")
    return v if isinstance(v, int) and v >= 0 else None


def slope(runs: dict[str, dict], names: tuple[str, str], tokens: tuple[int, int]) -> float | None:
    """Round trips per generated token: (rt(b) - rt(a)) / (tokens_b - tokens_a), from two
    --exact runs that differ only in their token count; None unless both ran cleanly."""
    a, b = (runs.get(n) for n in names)
    if not (ok(a) and ok(b)) or tokens[1] == tokens[0]:
        return None
    ra, rb = round_trips(a), round_trips(b)
    if ra is None or rb is None:
        return None
    return round((rb - ra) / (tokens[1] - tokens[0]), 3)


def same_ids(native: dict | None, other: dict | None) -> bool | None:
    """Whether two runs generated the same ids: the whole sequence when both made the same
    number of tokens, else the first 16 (a run cut short by its time budget); None if unknown."""
    if not (ok(native) and ok(other)):
        return None
    a, b = native["result"], other["result"]
    if a.get("tokens") == b.get("tokens") and a.get("sha256") and b.get("sha256"):
        return a["sha256"] == b["sha256"]
    if a.get("sha256_16") and b.get("sha256_16"):
        return a["sha256_16"] == b["sha256_16"]
    return None


def field(run: dict | None, key: str):
    return run["result"].get(key) if ok(run) else None


def rounds_of(runs: dict[str, dict], v: str, n: int) -> list[dict]:
    """Native and loopback tokens/s of each round of variant v that ran both ways
    (round 1: the main runs; round r: native-v-rR, gpuwire-v-loopback-rR)."""
    out = []
    for r in range(1, n + 1):
        suffix = "" if r == 1 else f"-r{r}"
        nat, rem = field(runs.get(f"native-{v}{suffix}"), "tokens_per_s"), \
            field(runs.get(f"gpuwire-{v}-loopback{suffix}"), "tokens_per_s")
        if nat and rem:
            out.append({"round": r, "native_tps": nat, "gpuwire_tps": rem, "ratio": round(rem / nat, 4)})
    return out


def median(xs: list[float]) -> float | None:
    xs = sorted(xs)
    if not xs:
        return None
    m = len(xs) // 2
    return xs[m] if len(xs) % 2 else round((xs[m - 1] + xs[m]) / 2, 4)


def summarize(runs: dict[str, dict], variants: list[str], paths: list[str],
              slope_tokens: tuple[int, int], rounds: int = 1) -> dict:
    """Per attention variant: native and gpuwire (loopback, then each emulated path) tokens/s,
    their ratio, prefill, whether the ids match native; round trips per token from the first
    variant's --exact runs; the runs that failed; the issue's two targets."""
    s: dict = {"variants": {}}
    for v in variants:
        nat = runs.get(f"native-{v}")
        row = {"native_tps": field(nat, "tokens_per_s"), "native_prefill_ms": field(nat, "prefill_ms"),
               "native_tokens": field(nat, "tokens"), "paths": {}}
        for p in paths:
            r = runs.get(f"gpuwire-{v}-{p}")
            tps = field(r, "tokens_per_s")
            row["paths"][p] = {
                "tps": tps, "prefill_ms": field(r, "prefill_ms"), "tokens": field(r, "tokens"),
                "ratio": round(tps / row["native_tps"], 4) if tps and row["native_tps"] else None,
                "same_ids": same_ids(nat, r), "round_trips": round_trips(r)}
        s["variants"][v] = row
    first = variants[0] if variants else None
    s["slope_variant"] = first
    s["slope_tokens"] = list(slope_tokens)
    s["rt_per_token"] = (slope(runs, tuple(f"exact{n}-{first}" for n in slope_tokens), slope_tokens)
                         if first else None)
    lo = s["variants"].get(first, {}).get("paths", {}).get("loopback", {}) if first else {}
    s["rounds"] = rounds_of(runs, first, rounds) if first and rounds > 1 else []
    s["median_ratio"] = median([r["ratio"] for r in s["rounds"]]) if s["rounds"] else None
    judged = s["median_ratio"] if s["median_ratio"] is not None else lo.get("ratio")
    s["targets"] = {
        "ratio_at_least_0.95": None if judged is None else judged >= TARGET_RATIO,
        "rt_per_token_at_most_2": None if s["rt_per_token"] is None else s["rt_per_token"] <= TARGET_RT_PER_TOKEN,
    }
    s["failed"] = sorted(k for k, r in runs.items() if not ok(r))
    return s


def fmt(v, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def yes_no(v) -> str:
    return "-" if v is None else ("same" if v else "**differ**")


def table(res: dict) -> str:
    """The markdown summary hf-run prints last."""
    s = res["summary"]
    paths = res.get("paths") or ["loopback"]
    # versions and card from a native run, else any full run that finished
    full = sorted((not k.startswith("native-"), k) for k, r in res["runs"].items()
                  if ok(r) and "transformers" in r["result"])
    nat_any = res["runs"][full[0][1]]["result"] if full else {}
    head = (f"HF generate: {res.get('model', 'TinyLlama-1.1B-shaped Llama, random weights, bf16')}; "
            f"{res.get('tokens')} new tokens, greedy; transformers {nat_any.get('transformers', '?')} "
            f"({res.get('transformers_from') or 'source not said'}), torch {nat_any.get('torch', '?')}, "
            f"{nat_any.get('gpu', 'GPU not known')}")
    rows = ["| attention | native tokens/s | " + " | ".join(f"gpuwire {p} tokens/s (ratio)" for p in paths)
            + " | ids vs native | prefill ms native / gpuwire |",
            "|---|---|" + "---|" * len(paths) + "---|---|"]
    for v, row in s["variants"].items():
        cells = [f"{fmt(c.get('tps'))} ({fmt(c.get('ratio'), '.3f')})" if c.get("tps") else "-"
                 for c in (row["paths"].get(p, {}) for p in paths)]
        ids = ", ".join(f"{p}: {yes_no(row['paths'].get(p, {}).get('same_ids'))}" for p in paths)
        lo = row["paths"].get("loopback", {})
        rows.append(f"| {v} | {fmt(row['native_tps'])} | " + " | ".join(cells)
                    + f" | {ids} | {fmt(row['native_prefill_ms'])} / {fmt(lo.get('prefill_ms'))} |")
    n0, n1 = s["slope_tokens"]
    lines = [head, ""] + rows + [""]
    lines.append(f"round trips per generated token (gpuwire loopback, attention {s['slope_variant']}, "
                 f"slope of --exact {n0} and {n1}): {fmt(s['rt_per_token'], '.2f')}")
    if s.get("rounds"):
        each = "; ".join(f"{r['round']}: {fmt(r['native_tps'])} / {fmt(r['gpuwire_tps'])} ({fmt(r['ratio'], '.3f')})"
                         for r in s["rounds"])
        lines.append(f"rounds (attention {s['slope_variant']}, native / gpuwire loopback tokens/s, in turn): {each}; "
                     f"median ratio {fmt(s['median_ratio'], '.3f')} (judged against the target)")
    t = s["targets"]
    word = {True: "met", False: "NOT met", None: "not measured"}
    lines.append(f"targets (issue 20): >= 95% of native tokens/s: {word[t['ratio_at_least_0.95']]}; "
                 f"<= 2 round trips per token: {word[t['rt_per_token_at_most_2']]}")
    if s["failed"]:
        lines.append(f"failed runs: {', '.join(s['failed'])} (hf.json: stderr_tail)")
    for k in res.get("skipped", []):
        lines.append(f"skipped: {k}")
    return "\n".join(lines) + "\n"
