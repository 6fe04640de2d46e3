#!/usr/bin/env python3
"""Markdown tables for docs/compatibility.md from the real suites' results
(issue 14 item 1): NVIDIA's cuda-samples (tests/gpu/cuda-samples-run's
results.json or results.tsv) and nvidia-smi (tests/gpu/smi-compare's smi.json).
One table per suite: suite, test, native, gpuwire, verdict and the cause where
they differ; failures first, then the rest.

Writes compat/suites.md (compat/runner.py appends it to the compatibility.md
it writes) and, with --doc, puts the same text between the markers
<!-- suites:begin --> and <!-- suites:end --> of that file (appended if it
has none), so it survives the next compat run either way.

Usage: python3 compat/render_suites.py [--samples RESULTS] [--smi SMI_JSON]
           [--out compat/suites.md] [--doc docs/compatibility.md]
"""
from __future__ import annotations

import argparse
import collections
import csv
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEGIN, END = "<!-- suites:begin -->", "<!-- suites:end -->"
ORDER = {"FAIL": 0, "HANG": 1, "DIFFERS": 2, "NATIVE-FAIL": 3, "BUILD-FAIL": 4, "SKIPPED": 5, "BUILT": 6,
         "pass": 7, "same": 7}
OK = ("pass", "same", "BUILT")


def cell(text) -> str:
    """Text safe inside a markdown table cell."""
    return str(text if text is not None else "").replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").strip()


def load_samples(path: Path) -> dict:
    if path.suffix == ".tsv":
        with open(path, newline="") as f:
            return {"suite": "cuda-samples", "results": list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))}
    return json.loads(path.read_text())


def _exit_word(code, word, timeout_s=None) -> str:
    code = str(code if code is not None else "")
    if code in ("", "-"):
        return "–"
    if code in ("124", "137"):
        return "timed out"
    text = "exit 0" if code == "0" else f"exit {code}"
    return f"{text}, {word}" if word else text


def sample_cells(r: dict) -> tuple[str, str]:
    """The native and gpuwire cells of one sample."""
    v = r.get("verdict", "")
    if v == "BUILD-FAIL":
        return "not built", "–"
    native = _exit_word(r.get("native_exit"), r.get("native_result"))
    if v == "HANG":
        return native, "**hang**"
    if v == "SKIPPED":
        return native, "not run"
    return native, _exit_word(r.get("gpuwire_exit"), r.get("gpuwire_result"))


def verdict_cell(v: str) -> str:
    return v if v in OK or v in ("NATIVE-FAIL", "BUILD-FAIL", "SKIPPED") else f"**{v}**"


def render_samples(data: dict) -> list[str]:
    rows = sorted(data["results"], key=lambda r: (ORDER.get(r.get("verdict"), 5), r.get("category", ""), r["sample"]))
    counts = collections.Counter(r["verdict"] for r in rows)
    native_ok = sum(counts[v] for v in ("pass", "FAIL", "HANG"))
    md = ["### NVIDIA's cuda-samples", ""]
    facts = [f"{data[k]}" for k in ("date", "card") if data.get(k)]
    if data.get("gpuwire_commit"):
        facts.append(f"gpuwire at {data['gpuwire_commit']}")
    if data.get("samples_commit"):
        facts.append(f"cuda-samples at {str(data['samples_commit'])[:10]}")
    if data.get("seconds") is not None:
        facts.append(f"{data['seconds']} s in all" + (f" (budget {data['budget_s']} s)" if data.get("budget_s") else ""))
    if facts:
        md += ["Run: " + "; ".join(facts) + ". Built with `nvcc -arch=sm_90 -rdc=true` by `tests/gpu/cuda-samples-run`, "
               "each run from its own folder natively and through `gpuwire run` in `tests/gpu/nogpu`.", ""]
    line = f"**{len(rows)} samples**: " + ", ".join(f"{k} {n}" for k, n in sorted(counts.items(), key=lambda kv: ORDER.get(kv[0], 5)))
    if native_ok:
        line += (f". Through gpuwire **{counts['pass']} of the {native_ok}** that pass natively pass "
                 f"({100 * counts['pass'] / native_ok:.1f}%).")
    md += [line, "", "| suite | test | native | gpuwire | verdict | cause where they differ |", "|---|---|---|---|---|---|"]
    for r in rows:
        native, gw = sample_cells(r)
        cause = "" if r["verdict"] in OK else r.get("cause", "")
        md.append(f"| cuda-samples | {cell(r.get('category', ''))}/{cell(r['sample'])} | {native} | {gw} | "
                  f"{verdict_cell(r['verdict'])} | {cell(cause)} |")
    return md


def render_smi(data: dict) -> list[str]:
    md = ["### nvidia-smi", ""]
    facts = [f"{data[k]}" for k in ("date",) if data.get(k)]
    if data.get("gpuwire_commit"):
        facts.append(f"gpuwire at {data['gpuwire_commit']}")
    md += [("Run: " + "; ".join(facts) + ". " if facts else "") +
           "`nvidia-smi` and `nvidia-smi -q` natively and through `gpuwire run` in `tests/gpu/nogpu`, compared "
           "line by line by `tests/gpu/smi-compare`, values that move between two runs masked (its MOVING_Q list "
           "and table patterns: temperatures, power, clocks, utilization, fan, performance state, memory "
           "used and free, throughput, timestamps, process lists).", "",
           "| suite | test | native | gpuwire | verdict | cause where they differ |", "|---|---|---|---|---|---|"]
    for r in data["results"]:
        cause = "" if r["verdict"] in OK else r.get("cause", "")
        md.append(f"| nvidia-smi | `{cell(r['test'])}` | {_exit_word(r.get('native_exit'), '')} | "
                  f"{_exit_word(r.get('gpuwire_exit'), '')} | {verdict_cell(r['verdict'])} | {cell(cause)} |")
    for r in data["results"]:
        if r.get("differing"):
            md += ["", f"`{r['test']}`, the lines that differ (native `-`, gpuwire `+`):", "", "```",
                   *r["differing"][:40], *([f"... {len(r['differing']) - 40} more"] if len(r["differing"]) > 40 else []),
                   "```"]
    return md


def render(samples: dict | None, smi: dict | None) -> str:
    md = ["## Real software, unmodified", "",
          "Software nobody here wrote, run natively and through gpuwire in one device call "
          "(`GPU_STEPS=samples,smi tests/gpu/gpu-all`); rendered by `compat/render_suites.py`.", ""]
    if samples is not None:
        md += render_samples(samples) + [""]
    if smi is not None:
        md += render_smi(smi) + [""]
    return "\n".join(md).rstrip() + "\n"


def put_in_doc(doc: Path, text: str) -> None:
    """Replaces the marked section of doc, or appends one."""
    block = f"{BEGIN}\n{text.rstrip()}\n{END}\n"
    old = doc.read_text() if doc.exists() else ""
    if BEGIN in old and END in old:
        head, _, rest = old.partition(BEGIN)
        _, _, tail = rest.partition(END)
        new = head + block.rstrip("\n") + tail
    else:
        new = old.rstrip("\n") + ("\n\n" if old else "") + block
    doc.write_text(new)


def previous_sections(path: Path, skip: list[str]) -> str:
    """The suite sections (### headings) of an earlier rendering, those in skip left out."""
    if not path.exists():
        return ""
    parts, cur = [], None
    for line in path.read_text().splitlines():
        if line.startswith("### "):
            cur = [line]
            parts.append(cur)
        elif cur is not None:
            cur.append(line)
    return "\n\n".join("\n".join(p).strip() for p in parts if p[0] not in skip)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=Path, help="tests/gpu/cuda-samples-run's results.json or results.tsv")
    ap.add_argument("--smi", type=Path, help="tests/gpu/smi-compare's smi.json")
    ap.add_argument("--out", type=Path, default=ROOT / "compat" / "suites.md")
    ap.add_argument("--doc", type=Path, help="also put the text into this file between its suites markers")
    args = ap.parse_args(argv)
    if not args.samples and not args.smi:
        ap.error("give --samples, --smi or both")
    text = render(load_samples(args.samples) if args.samples else None,
                  json.loads(args.smi.read_text()) if args.smi else None)
    # a suite not given this time keeps its section from the last rendering
    kept = previous_sections(args.out, skip=[s for s, given in (("### NVIDIA's cuda-samples", args.samples),
                                                                ("### nvidia-smi", args.smi)) if given])
    if kept:
        text = text.rstrip() + "\n\n" + kept.rstrip() + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    if args.doc:
        put_in_doc(args.doc, text)
    print(f"render_suites: wrote {args.out}" + (f" and {args.doc}" if args.doc else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
