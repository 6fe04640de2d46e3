"""The compat suite's verdicts: pure functions, no I/O (tests/unit/test_compat_verdicts.py).

A run is a mapping: rc, timed_out, error, skipped, result (the workload's JSON
result line, or None), tail. judge(native, gpuwire) gives one of:

  skipped        a run was stopped by the suite's time budget
  native-failed  the native run did not pass (nonzero exit, timeout, error, no
                 result line): nothing to compare against, never a pass
  FAIL           the gpuwire run failed, or any reported field differs
  pass           both passed and every reported field is equal

Every field of the result is compared (a field on one side only is a
difference) except timings: fields whose name ends in VOLATILE_SUFFIXES, and
durations written inside text (DURATION, e.g. "185.59 ms"). A workload with a
tolerance ("tolerance" other than "exact") declares rtol and atol: its
"values", and numbers inside its text, are compared within them; its digest
covers results that may legitimately differ, so it is not compared (only
reported as "exact"); "same" is always compared exactly.
"""

from __future__ import annotations

import json
import math
import re

PASS, FAIL, NATIVE_FAILED, SKIPPED = "pass", "FAIL", "native-failed", "skipped"

# Timings differ from run to run: the only fields left out of the comparison.
VOLATILE_SUFFIXES = ("_s", "_ms", "_us", "_ns")
# and, inside text, a number with a time unit ("event timing 185.59 ms").
DURATION = re.compile(r"(?<![\w.])\d+(?:\.\d+)?(?:[eE][-+]?\d+)?\s?(?:ns|us|µs|ms|s)\b")
# A number standing alone in text (not part of a word like H100 or a version like 0.11.2).
NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.])")
EXACT_FIELDS = ("name", "tolerance", "rtol", "atol", "same")


def volatile(key: str) -> bool:
    return isinstance(key, str) and key.endswith(VOLATILE_SUFFIXES)


def close(a, b, rtol: float, atol: float) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        if math.isinf(a) or math.isinf(b):
            return a == b
        return abs(a - b) <= atol + rtol * max(abs(a), abs(b))
    return a == b


def _split_text(s: str) -> tuple:
    nums = []

    def grab(m):
        nums.append(float(m.group()))
        return "#"
    return NUMBER.sub(grab, DURATION.sub("<duration>", s)), nums


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _show(v) -> str:
    s = json.dumps(v)
    return s if len(s) <= 160 else s[:157] + "..."


def _diff(a, b, path: str, rtol: float, atol: float, out: list) -> None:
    """Append one message per difference between a (native) and b (gpuwire)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in list(a) + [k for k in b if k not in a]:
            p = f"{path}.{k}" if path else str(k)
            if volatile(k):
                continue
            if k not in b:
                out.append(f"{p}: missing through gpuwire (native {_show(a[k])})")
            elif k not in a:
                out.append(f"{p}: missing natively (gpuwire {_show(b[k])})")
            else:
                _diff(a[k], b[k], p, rtol, atol, out)
        return
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{path}: {len(a)} items natively, {len(b)} through gpuwire")
        else:
            for i, (x, y) in enumerate(zip(a, b)):
                _diff(x, y, f"{path}[{i}]", rtol, atol, out)
        return
    if isinstance(a, str) and isinstance(b, str):
        (ta, na), (tb, nb) = _split_text(a), _split_text(b)
        same = ta == tb and len(na) == len(nb) and all(close(x, y, rtol, atol) for x, y in zip(na, nb))
    elif _is_number(a) and _is_number(b):
        same = close(a, b, rtol, atol)
    else:
        same = type(a) is type(b) and a == b
    if not same:
        out.append(f"{path}: native {_show(a)} vs gpuwire {_show(b)}")


def compare(n: dict, g: dict) -> list:
    """The differences between two results, as messages naming the field (empty: equal)."""
    tolerant = n.get("tolerance", "exact") != "exact"
    rtol, atol = (float(n.get("rtol", 0)), float(n.get("atol", 0))) if tolerant else (0.0, 0.0)
    msgs = []
    if tolerant and not n.get("values"):
        msgs.append("values: a tolerance is declared but the native run reports none")
    for key in list(n) + [k for k in g if k not in n]:
        if volatile(key) or (tolerant and key == "digest"):
            continue
        found = []
        tol = (0.0, 0.0) if key in EXACT_FIELDS else (rtol, atol)
        _diff({k: n[k] for k in (key,) if k in n}, {k: g[k] for k in (key,) if k in g}, "", *tol, found)
        if key == "values" and len(found) > 1:
            msgs.append(f"values: {len(found)} outside rtol={rtol:g} atol={atol:g}, first {found[0]}")
        else:
            msgs += found[:3] + ([f"{key}: {len(found) - 3} more differences"] if len(found) > 3 else [])
    return msgs


def run_problem(run) -> str:
    """Why a run did not pass ("" when it did): it must exit 0 in time with a result line."""
    if run.get("error"):
        return run["error"]
    if run.get("timed_out"):
        return "timed out"
    rc = run.get("rc")
    if rc is None:
        return "no exit status"
    if rc != 0:
        return f"exit {rc}" if rc > 0 else f"killed by signal {-rc}"
    res = run.get("result")
    if not isinstance(res, dict) or "digest" not in res:
        return "no JSON result line at the end of stdout"
    return ""


def judge(native, gpuwire) -> dict:
    """{"verdict", "why", "tail", "exact"} for one workload's two runs."""
    if native.get("skipped"):
        return {"verdict": SKIPPED, "why": native["skipped"], "tail": [], "exact": None}
    why = run_problem(native)
    if why:
        return {"verdict": NATIVE_FAILED, "why": f"native run: {why}", "tail": native.get("tail") or [],
                "exact": None}
    if gpuwire.get("skipped"):
        return {"verdict": SKIPPED, "why": gpuwire["skipped"], "tail": [], "exact": None}
    why = run_problem(gpuwire)
    if why:
        return {"verdict": FAIL, "why": f"gpuwire run: {why}", "tail": gpuwire.get("tail") or [], "exact": None}
    n, g = native["result"], gpuwire["result"]
    exact = n.get("digest") == g.get("digest")
    diffs = compare(n, g)
    if diffs:
        return {"verdict": FAIL, "why": "results differ: " + "; ".join(diffs), "tail": [], "exact": exact}
    return {"verdict": PASS, "why": "", "tail": [], "exact": exact}


# ---------------------------------------------------------------- re-judging a results.json

def side_run(side: dict, row: dict) -> dict:
    """A results.json row's side as a run for judge(). Files written before the full result was
    recorded ("result" absent) kept only digest and notes: those are compared, and a tolerance
    workload's values, not recorded, are stood in for by one equal placeholder."""
    skipped = side.get("skipped")
    if skipped is None:   # older files put a skip's reason in "error" and "skipped" in "short"
        skipped = side.get("error") if side.get("short") == "skipped" else ""
    run = {"rc": side.get("rc"), "timed_out": side.get("timed_out"), "skipped": skipped,
           "error": "" if skipped else side.get("error") or "", "tail": row.get("tail") or []}
    if "result" in side:
        run["result"] = side["result"]
    elif side.get("digest") is not None:
        res = {"digest": side["digest"], "notes": side.get("notes"), "tolerance": row.get("tolerance", "exact")}
        if res["tolerance"] != "exact":
            res["values"] = ["(not recorded)"]
        run["result"] = res
    else:
        run["result"] = None
    return run


def rejudge(doc: dict) -> tuple:
    """(a copy of a results.json document with every verdict judged again, [(name, old, new, why)] of
    the rows whose verdict changed). A row with only digest and notes recorded is never raised to
    a pass its recorded verdict did not give (what decided it was not kept)."""
    rows, changes = [], []
    for row in doc.get("workloads", []):
        nat, rem = row.get("native", {}), row.get("gpuwire", {})
        v = judge(side_run(nat, row), side_run(rem, row))
        legacy = "result" not in nat or "result" not in rem
        old = row.get("verdict")
        if old == "native failure":   # the name before native-failed
            old = NATIVE_FAILED
        if legacy and v["verdict"] == PASS and old != PASS:
            v = {"verdict": old, "why": row.get("why", ""), "tail": row.get("tail") or [], "exact": row.get("exact")}
        new = dict(row, verdict=v["verdict"], why=v["why"], tail=v["tail"] or row.get("tail") or [],
                   exact=v["exact"])
        if v["verdict"] != row.get("verdict"):
            changes.append((row.get("name"), row.get("verdict"), v["verdict"], v["why"]))
        rows.append(new)
    counts = {}
    for r in rows:
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    return dict(doc, workloads=rows, counts=counts), changes
