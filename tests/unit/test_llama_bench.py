"""Checks of bench/llama's pure parts (no llama.cpp, no GPU): the load time read
from llama-bench's stderr, the summary's ratios and round-trip slope, the
table's gaps, and the GGUF writer's shapes and random values.

    python -m pytest -q -p no:cacheprovider tests/unit/test_llama_bench.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench" / "llama"))
import bench  # noqa: E402


def test_load_seconds_runs_from_starting_to_the_context_line():
    err = [(0.2, "ggml_cuda_init: found 1 CUDA devices"),
           (1.0, "llama-bench: benchmark 1/1: starting"),
           (1.1, "llama_model_loader: loaded meta data"),
           (3.5, "llama_context: constructing llama_context"),
           (3.9, "llama-bench: benchmark 1/1: generation run 1/1")]
    assert bench.load_seconds(err) == 2.5


def test_load_seconds_falls_back_to_the_next_progress_line():
    err = [(1.0, "llama-bench: benchmark 1/1: starting"), (4.25, "llama-bench: benchmark 1/1: prompt run 1/3")]
    assert bench.load_seconds(err) == 3.25
    assert bench.load_seconds([(1.0, "llama-bench: benchmark 1/2: starting"),
                               (2.0, "llama-bench: benchmark 1/2: warmup prompt run"),
                               (9.0, "llama-bench: benchmark 2/2: starting")]) == 1.0
    assert bench.load_seconds([(1.0, "llama-bench: benchmark 1/1: starting")]) is None
    assert bench.load_seconds([(2.0, "llama_context: x")]) is None


def test_bench_records_keeps_the_tests_and_survives_garbage():
    out = json.dumps([{"n_prompt": 512, "n_gen": 0, "avg_ts": 9000.5, "samples_ts": [9000, 9001], "cpu_info": "x"}])
    recs = bench.bench_records(out)
    assert recs[0]["avg_ts"] == 9000.5 and "cpu_info" not in recs[0]
    assert bench.bench_records("gpuwire: warning\n[") == []
    assert bench.bench_records("a notice\n" + out + "\n")[0]["avg_ts"] == 9000.5


def _run(tests, rt=None):
    r = {"rc": 0, "timed_out": False, "tests": tests}
    if rt is not None:
        r["stats"] = {"round_trips": rt}
    return r


def test_summary_ratio_slope_and_tokens():
    pp = {"n_prompt": 512, "n_gen": 0, "samples_ts": [1, 1, 1]}
    tg = {"n_prompt": 0, "n_gen": 128, "samples_ts": [1, 1, 1]}
    runs = {
        "bench-native": _run([{**pp, "avg_ts": 10000.0}, {**tg, "avg_ts": 160.0}]),
        "bench-gpuwire": _run([{**pp, "avg_ts": 9000.0}, {**tg, "avg_ts": 120.0}], rt=2000),
        "gen32-gpuwire": _run([], rt=500),
        "gen160-gpuwire": _run([], rt=1780),
    }
    runs["bench-native"]["load_s"] = 1.5
    runs["bench-gpuwire"]["load_s"] = 7.5
    runs["gen32-gpuwire"]["load_s"] = 2.75
    runs["gen160-gpuwire"]["load_s"] = 2.5
    s = bench.summarize(runs)
    assert s["pp512"]["ratio"] == 0.9 and s["tg128"]["ratio"] == 0.75
    assert s["rt_per_generated_token"] == 10.0
    # 3 x 512 + 512 (warm-up) prompt tokens, 3 x 128 + 1 generated
    assert s["bench_rt_per_token"] == round(2000 / (4 * 512 + 3 * 128 + 1), 3)
    assert s["load_s"] == {"native": 1.5, "gpuwire-cold": 7.5, "gpuwire-warm": 2.5}
    assert s["failed"] == []


def test_table_shows_gaps_failures_and_skips():
    runs = {"bench-native": {"rc": 1, "timed_out": False, "tests": []}}
    res = {"summary": bench.summarize(runs), "skipped": ["gpuwire runs: no --server given"], "runs": runs,
           "reps": 3, "model": "m.gguf", "build": "given"}
    t = bench.table(res)
    assert "| tg128 tokens/s | - | - | - |" in t
    assert "failed runs: bench-native" in t and "skipped: gpuwire runs" in t
    assert "| backend | - | - | |" in t
    runs["bench-native"]["tests"] = [{"backends": "CUDA", "gpu_info": "NVIDIA H100 80GB HBM3"}]
    assert "| backend | CUDA NVIDIA H100 80GB HBM3 | - | |" in bench.table(res)


def test_gguf_shapes_and_values():
    np = pytest.importorskip("numpy")
    import make_gguf as mg

    n = sum(int(np.prod(shape)) for _, shape, _ in mg.tensor_shapes(mg.GPT2_XL))
    assert 1.5e9 < n < 1.6e9  # GPT-2-XL's count, with tied embeddings
    names = [name for name, _, _ in mg.tensor_shapes(mg.SMALL)]
    assert len(names) == len(set(names)) == 2 + 9 * mg.SMALL.n_layer
    v = mg.random_f16(np.random.default_rng(1), (1000, 64)).astype(np.float32)
    assert np.isfinite(v).all() and (np.abs(v) >= 2.0 ** -8).all() and (np.abs(v) < 2.0 ** -4).all()
    assert 0.4 < (v > 0).mean() < 0.6 and len(np.unique(v)) > 1000


def test_emulated_paths_are_judged_against_native_plus_rtt():
    """Behind an emulated RTT R a generated token may take native + 1.1 R: 500 us
    and 2 ms paths, one inside the bound and one outside, and one that did not run."""
    assert bench.rtt_ms_of("500us") == 0.5 and bench.rtt_ms_of("2ms") == 2.0
    with pytest.raises(ValueError):
        bench.rtt_ms_of("2s")

    def gen(n, tps):
        return {"rc": 0, "timed_out": False, "tests": [{"n_prompt": 0, "n_gen": n, "avg_ts": tps}]}

    runs = {"bench-native": {"rc": 0, "timed_out": False,
                             "tests": [{"n_prompt": 0, "n_gen": 128, "avg_ts": 250.0}]},  # 4 ms a token
            "tg-500us": gen(bench.NETEM_TOKENS, 1000 / 4.5),   # 4.5 ms <= 4 + 0.55
            "tg-2ms": gen(bench.NETEM_TOKENS, 1000 / 6.5)}     # 6.5 ms > 4 + 2.2
    s = bench.summarize(runs, [("500us", 0.5), ("2ms", 2.0), ("20000us", 20.0)])
    by = {e["path"]: e for e in s["netem"]}
    assert by["500us"]["met"] is True and round(by["500us"]["target_ms"], 2) == 4.55
    assert by["2ms"]["met"] is False and round(by["2ms"]["ms_per_token"], 2) == 6.5
    assert by["20000us"]["met"] is None and by["20000us"]["tps"] is None
    res = {"summary": s, "model": "m", "reps": 1, "runs": runs, "skipped": [], "build": "b"}
    text = bench.table(res)
    assert "behind 500us RTT" in text and "met" in text and "missed" in text


def test_q4km_model_types_and_blocks():
    """The Llama-3-8B Q4_K_M-shaped model: Q6_K where llama-quantize's Q4_K_M
    keeps more bits, Q4_K elsewhere, 8.0 B weights in about 4.9 GB; written
    blocks decode to finite weights in the f16 model's range."""
    np = pytest.importorskip("numpy")
    import make_gguf as mg

    shapes = mg.tensor_shapes(mg.LLAMA3_8B_Q4KM)
    kinds = {name: kind for name, _, kind in shapes}
    assert kinds["output.weight"] == "q6_k" and kinds["token_embd.weight"] == "q4_k"
    wide = [i for i in range(32) if kinds[f"blk.{i}.ffn_down.weight"] == "q6_k"]
    assert wide == [0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31]
    assert all(kinds[f"blk.{i}.attn_v.weight"] == kinds[f"blk.{i}.ffn_down.weight"] for i in range(32))
    assert kinds["blk.4.attn_q.weight"] == "q4_k" and kinds["blk.4.attn_norm.weight"] == "f32"
    n = sum(int(np.prod(s)) for _, s, _ in shapes)
    size = sum(mg.nbytes(s, k) for _, s, k in shapes)
    assert 8.0e9 < n < 8.1e9 and 4.8e9 < size < 5.0e9
    rng = np.random.default_rng(3)
    q4 = mg.random_blocks(rng, (4, 512), "q4_k")
    assert q4.shape == (4, 2 * mg.Q4_K_BYTES)
    d = q4.reshape(-1, mg.Q4_K_BYTES)[:, 0:4].copy().view(np.float16).astype(np.float32)
    assert (d >= 2.0 ** -14).all() and (d < 2.0 ** -12).all()
    q6 = mg.random_blocks(rng, (2, 256), "q6_k").reshape(-1, mg.Q6_K_BYTES)
    scales = q6[:, 192:208].view(np.int8)
    assert (scales >= -16).all() and (scales < 16).all()
    d6 = q6[:, 208:210].copy().view(np.float16).astype(np.float32)
    assert (d6 >= 2.0 ** -14).all() and (d6 < 2.0 ** -13).all()


def test_serve_table_and_token_comparison():
    """serve_bench's table: totals, per-stream rates both ways with ratios, and
    whether each stream's token ids matched native's."""
    import serve_bench as sb

    def way(tps, toks, first=0.02):
        return {"total_tps": tps, "ready_s": 1.0, "streams": [
            {"stream": i, "tokens": toks[i], "first_s": first, "last_s": 1.0, "client_tps": tps / 2,
             "server_tps": tps / 2 + 1, "error": None} for i in range(2)]}
    res = {"model": "m.gguf", "streams": 2, "tokens": 4,
           "ways": {"native": way(400.0, [[1, 2], [3, 4]]), "gpuwire": way(380.0, [[1, 2], [3, 5]], 0.05)}}
    res["same_tokens"], res["differs"] = False, "streams 1"
    t = sb.table(res)
    assert "| total tokens/s | 400.0 | 380.0 | 0.95 |" in t
    assert "| stream 1 tokens/s (server) | 201.0 | 191.0 | 0.95 |" in t
    assert "| slowest first token, ms | 20.0 | 50.0 | 2.50 |" in t
    assert "NO (streams 1)" in t
    assert sb.prompt_of(0) != sb.prompt_of(1) and len(sb.prompt_of(3)) == sb.PROMPT_TOKENS
    assert all(300 <= t < 4000 for t in sb.prompt_of(3))


def test_serve_table_with_a_second_server():
    """The A/B way (a second server with one setting changed) gets its own
    column and ratio, and its token ids are compared with native's too."""
    import serve_bench as sb

    def way(tps, toks):
        return {"total_tps": tps, "ready_s": 1.0, "streams": [
            {"stream": 0, "tokens": toks, "first_s": 0.01, "last_s": 1.0, "client_tps": tps, "server_tps": tps,
             "error": None}]}
    res = {"model": "m.gguf", "streams": 1, "tokens": 2, "ab_label": "GPUWIRE_DELIVERIES=events",
           "ways": {"native": way(400.0, [1, 2]), "gpuwire": way(200.0, [1, 2]), "gpuwire-ab": way(300.0, [1, 2])}}
    t = sb.table(res)
    assert "| | native | gpuwire | gpuwire-ab | gpuwire/native | gpuwire-ab/native |" in t
    assert "| total tokens/s | 400.0 | 200.0 | 300.0 | 0.50 | 0.75 |" in t
    assert "a second server with GPUWIRE_DELIVERIES=events" in t
