"""model_load: content-addressed transfers (issue 5, docs/cache.md) at an emulated
1 Gbit/s link with 0.5 ms RTT (gpuwire-netem).

Writes a safetensors file of random bf16 tensors (default 4 GiB), then times
loading it onto the GPU with PyTorch (safetensors `safe_open(framework="pt")`,
`get_tensor(name).to("cuda")` per tensor, one synchronize at the end):
natively, through gpuwire with an empty server cache (cold), and again (warm;
and warm with the client's memo off). Before that, PyTorch start-up (import,
first cuBLAS matmul, first cuDNN convolution) cold and warm, for the module
image bytes. Prints a table and writes JSON; runs its own gpuwire server (with
a fresh cache folder) and gpuwire-netem.

    python3 bench/model_load.py [--size-gb 4] [--out FILE.json] [--standin]
    BENCH_ONLY=model_load bench/run          # the same, from the suite

Targets: warm load sends <= 1% of the weight bytes and takes <= 1.5x native;
warm start-up sends <= 1% of its module bytes.

Without PyTorch (or with --standin) the loader is ctypes on the driver API
(cuMemAlloc + cuMemcpyHtoD from the mmap'd file), so the whole path can be
smoke-tested on the CPU stand-in. Standard library only in this process."""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CHILD = "--child"

# ---- the model file ----


def layer_shapes(hidden: int = 4096, ffn: int = 11008) -> list[tuple[str, list[int]]]:
    """One transformer layer's tensors (Llama-like, bf16)."""
    return [("input_layernorm.weight", [hidden]), ("self_attn.q_proj.weight", [hidden, hidden]),
            ("self_attn.k_proj.weight", [hidden, hidden]), ("self_attn.v_proj.weight", [hidden, hidden]),
            ("self_attn.o_proj.weight", [hidden, hidden]), ("post_attention_layernorm.weight", [hidden]),
            ("mlp.gate_proj.weight", [ffn, hidden]), ("mlp.up_proj.weight", [ffn, hidden]),
            ("mlp.down_proj.weight", [hidden, ffn])]


def write_model(path: Path, size_bytes: int, seed: int = 5) -> dict:
    """A safetensors file of random bf16 tensors, about size_bytes of weights; every
    4 MiB chunk differs (random bytes), so nothing dedupes within the file."""
    tensors, off, layer = [], 0, 0
    while off < size_bytes:
        for name, shape in layer_shapes():
            n = 2
            for d in shape:
                n *= d
            tensors.append((f"model.layers.{layer}.{name}", shape, off, off + n))
            off += n
        layer += 1
    header = {name: {"dtype": "BF16", "shape": shape, "data_offsets": [b, e]} for name, shape, b, e in tensors}
    header["__metadata__"] = {"format": "pt", "writer": "gpuwire bench/model_load.py", "seed": str(seed)}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    want = 8 + len(raw) + off
    meta = path.with_suffix(".json")
    if path.exists() and path.stat().st_size == want and meta.exists():
        return json.loads(meta.read_text())  # written by an earlier run: same file, same identity
    tmp = path.with_suffix(".tmp")
    rng = random.Random(seed)
    block = 64 << 20
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        left = off
        while left:
            k = min(block, left)
            f.write(rng.randbytes(k) if k < block else os.urandom(k))
            left -= k
    os.replace(tmp, path)
    info = {"path": str(path), "bytes": want, "weight_bytes": off, "tensors": len(tensors), "layers": layer}
    meta.write_text(json.dumps(info))
    return info


# ---- the child processes (run natively or under `gpuwire run`) ----


def child_load(path: str, loader: str) -> dict:
    t0 = time.perf_counter()
    if loader == "ctypes":
        return _load_ctypes(path, t0)
    import torch

    t1 = time.perf_counter()
    torch.zeros(1, device="cuda")
    torch.cuda.synchronize()
    t2 = time.perf_counter()
    out = {}
    try:
        from safetensors import safe_open

        with safe_open(path, framework="pt", device="cpu") as f:
            for k in f.keys():
                out[k] = f.get_tensor(k).to("cuda")
        how = "safetensors safe_open(framework=pt) + get_tensor(k).to('cuda')"
    except ImportError:  # what safetensors does for pt: a private file mapping as storage
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(n))
        base = 8 + n
        storage = torch.UntypedStorage.from_file(path, shared=False, nbytes=os.path.getsize(path))
        for k, v in header.items():
            if k == "__metadata__":
                continue
            b, e = v["data_offsets"]
            t = torch.empty(0, dtype=torch.uint8).set_(storage, base + b, (e - b,)).view(torch.bfloat16)
            out[k] = t.reshape(v["shape"]).to("cuda")
        how = "torch.UntypedStorage.from_file(shared=False) + .to('cuda') (safetensors not installed)"
    torch.cuda.synchronize()
    t3 = time.perf_counter()
    # correctness: a few tensors back from the GPU, compared with the file's bytes
    names = sorted(out)
    sample = [names[0], names[len(names) // 2], names[-1]]
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        ok = True
        for k in sample:
            b, e = header[k]["data_offsets"]
            f.seek(8 + n + b)
            back = out[k].cpu().flatten().view(torch.uint8)
            ok &= (back.numpy().tobytes() if _has_numpy() else bytes(back.tolist())) == f.read(e - b)
    return {"load_s": round(t3 - t2, 4), "import_s": round(t1 - t0, 4), "cuda_init_s": round(t2 - t1, 4),
            "total_s": round(t3 - t0, 4), "tensors": len(out), "loader": how, "verified": ok,
            "torch": torch.__version__}


def _has_numpy() -> bool:
    try:
        import numpy  # noqa: F401
        return True
    except ImportError:
        return False


def _load_ctypes(path: str, t0: float) -> dict:
    """The same copies without PyTorch: per tensor cuMemAlloc + cuMemcpyHtoD from the mmap."""
    import ctypes
    import hashlib
    import mmap

    lib = ctypes.CDLL("libcuda.so.1")
    dev, ctx = ctypes.c_int(), ctypes.c_void_p()
    assert lib.cuInit(0) == 0 and lib.cuDeviceGet(ctypes.byref(dev), 0) == 0
    assert lib.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) == 0 and lib.cuCtxSetCurrent(ctx) == 0
    t2 = time.perf_counter()
    f = open(path, "rb")
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
    m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)  # private, like torch's from_file(shared=False)
    base = ctypes.addressof(ctypes.c_char.from_buffer(m)) + 8 + n
    ptrs = {}
    for k, v in header.items():
        if k == "__metadata__":
            continue
        b, e = v["data_offsets"]
        d = ctypes.c_uint64()
        assert lib.cuMemAlloc_v2(ctypes.byref(d), ctypes.c_size_t(e - b)) == 0
        rc = lib.cuMemcpyHtoD_v2(d, ctypes.c_void_p(base + b), ctypes.c_size_t(e - b))
        assert rc == 0, rc
        ptrs[k] = (d, b, e)
    assert lib.cuCtxSynchronize() == 0
    t3 = time.perf_counter()
    ok = True
    for k in sorted(ptrs)[:: max(1, len(ptrs) // 3)]:
        d, b, e = ptrs[k]
        back = ctypes.create_string_buffer(e - b)
        assert lib.cuMemcpyDtoH_v2(back, d, ctypes.c_size_t(e - b)) == 0
        ok &= hashlib.sha256(back.raw).digest() == hashlib.sha256(m[8 + n + b: 8 + n + e]).digest()
    return {"load_s": round(t3 - t2, 4), "total_s": round(t3 - t0, 4), "tensors": len(ptrs),
            "loader": "ctypes cuMemAlloc + cuMemcpyHtoD from a private mmap", "verified": ok}


def child_startup() -> dict:
    t0 = time.perf_counter()
    import torch

    t1 = time.perf_counter()
    torch.zeros(1, device="cuda")
    torch.cuda.synchronize()
    t2 = time.perf_counter()
    a = torch.randn(1024, 1024, device="cuda", dtype=torch.float16)
    (a @ a).sum().item()
    t3 = time.perf_counter()
    x = torch.randn(8, 16, 64, 64, device="cuda")
    w = torch.randn(32, 16, 3, 3, device="cuda")
    torch.nn.functional.conv2d(x, w, padding=1).sum().item()
    t4 = time.perf_counter()
    return {"import_s": round(t1 - t0, 4), "first_tensor_s": round(t2 - t1, 4), "first_matmul_s": round(t3 - t2, 4),
            "first_conv_s": round(t4 - t3, 4), "total_s": round(t4 - t0, 4), "cudnn": torch.backends.cudnn.version()}


# ---- orchestration ----


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, what: str, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited ({proc.returncode}): {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on {port}")


def run_case(label: str, child_args: list[str], a, server: str | None, env: dict, work: Path) -> dict:
    cmd = [a.python, str(Path(__file__).resolve()), CHILD, *child_args]
    stats = work / f"stats-{label}.json"
    if server:
        cmd = a.nogpu + [a.python, "-m", "gpuwire", "run", "--server", server, "--stats", str(stats), "--"] + cmd
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=a.case_timeout, cwd=HERE)
    wall = time.monotonic() - t0
    (work / f"{label}.log").write_text(f"$ {' '.join(cmd)}\n--- stdout\n{p.stdout}\n--- stderr\n{p.stderr}")
    rec: dict = {"label": label, "wall_s": round(wall, 3), "ok": p.returncode == 0}
    for line in reversed(p.stdout.splitlines()):
        if line.startswith("{"):
            rec["result"] = json.loads(line)
            break
    if not rec["ok"] or "result" not in rec:
        rec["ok"] = False
        rec["error"] = (p.stderr.strip().splitlines() or ["no result"])[-1][:300]
    if server and stats.exists():
        st = json.loads(stats.read_text())
        rec["stats"] = {k: st.get(k) for k in ("calls", "round_trips", "bytes_to_server", "bytes_from_server")}
        rec["cache"] = st.get("cache", {})
    print(f"model_load: {label}: {'ok' if rec['ok'] else 'FAILED ' + rec.get('error', '')} ({wall:.1f} s)",
          flush=True)
    return rec


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-gb", type=float, default=4.0, help="weight bytes in GiB (default 4)")
    ap.add_argument("--dir", default="", help="where the model file goes (default build/bench/model_load)")
    ap.add_argument("--out", default="", help="JSON result (default $OUT/model_load.json or build/bench/...)")
    ap.add_argument("--standin", action="store_true", help="CPU stand-in driver, ctypes loader, no native run")
    ap.add_argument("--loader", choices=["auto", "torch", "ctypes"], default="auto")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--nogpu", default="", help="wrapper for the gpuwire client (tests/gpu/nogpu)")
    ap.add_argument("--netem", default=str(ROOT / "src" / "gpuwire" / "_native" / "gpuwire-netem"))
    ap.add_argument("--rtt-us", type=int, default=500)
    ap.add_argument("--mbps", type=int, default=1000)
    ap.add_argument("--case-timeout", type=float, default=240)
    ap.add_argument("--no-startup", action="store_true", help="skip the PyTorch start-up cases")
    a = ap.parse_args()
    a.nogpu = [a.nogpu] if a.nogpu else []
    loader = a.loader
    if loader == "auto":
        try:
            import importlib.util
            loader = "ctypes" if a.standin or importlib.util.find_spec("torch") is None else "torch"
        except ImportError:
            loader = "ctypes"
    outdir = Path(os.environ["OUT"]) if os.environ.get("OUT") else ROOT / "build" / "bench"
    out = Path(a.out) if a.out else outdir / "model_load.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    mdir = Path(a.dir) if a.dir else ROOT / "build" / "bench" / "model_load"
    mdir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    info = write_model(mdir / "model.safetensors", int(a.size_gb * (1 << 30)))
    print(f"model_load: model {info['path']}: {info['weight_bytes'] / 2**30:.2f} GiB of weights in "
          f"{info['tensors']} tensors ({time.monotonic() - t0:.1f} s to write or reuse)", flush=True)
    work = Path(tempfile.mkdtemp(prefix="gpuwire-model-load-"))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(HERE)] + [p for p in [env.get("PYTHONPATH")] if p])
    env.pop("GPUWIRE_STATS", None)
    procs: list[subprocess.Popen] = []
    cases: list[dict] = []
    report: dict = {"bench": "model_load", "model": info, "loader": loader, "rtt_us": a.rtt_us, "mbps": a.mbps,
                    "standin": a.standin, "cases": cases}
    try:
        port, nport = free_port(), free_port()
        slog, nlog = work / "server.log", work / "netem.log"
        cache_dir = work / "server-cache"
        srv = subprocess.Popen([a.python, "-m", "gpuwire", "server", "--listen", f"127.0.0.1:{port}", "--driver",
                                "standin" if a.standin else "nvidia", "--cache-dir", str(cache_dir),
                                "--cache-max-bytes", "0", "--log-level", "DEBUG"],
                               stdout=open(slog, "wb"), stderr=subprocess.STDOUT, env=env, start_new_session=True)
        procs.append(srv)
        wait_port(port, srv, "gpuwire server", slog)
        net = subprocess.Popen([a.netem, "--listen", f"127.0.0.1:{nport}", "--to", f"127.0.0.1:{port}",
                                "--rtt-us", str(a.rtt_us), "--bandwidth-mbps", str(a.mbps)],
                               stdout=open(nlog, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
        procs.append(net)
        wait_port(nport, net, "gpuwire-netem", nlog)
        server = f"127.0.0.1:{nport}"
        memo_env = dict(env, XDG_CACHE_HOME=str(work / "client-cache"))  # a fresh client memo
        load_args = ["load", info["path"], loader]
        if loader == "torch" and not a.no_startup:
            if not a.standin:
                cases.append(run_case("startup native", ["startup"], a, None, env, work))
            cases.append(run_case("startup cold", ["startup"], a, server, memo_env, work))
            cases.append(run_case("startup warm", ["startup"], a, server, memo_env, work))
        if not a.standin:
            cases.append(run_case("load native", load_args, a, None, env, work))
        cases.append(run_case("load cold", load_args, a, server, memo_env, work))
        cases.append(run_case("load warm", load_args, a, server, memo_env, work))
        cases.append(run_case("load warm, no memo", load_args, a, server, dict(memo_env, GPUWIRE_MEMO="0"), work))
        if not a.standin:
            cases.append(run_case("load native again", load_args, a, None, env, work))
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                pass
        logs = out.parent / "model_load-logs"
        shutil.rmtree(logs, ignore_errors=True)
        shutil.copytree(work, logs, ignore=shutil.ignore_patterns("server-cache", "client-cache"))
        shutil.rmtree(work, ignore_errors=True)
    summarize(report)
    out.write_text(json.dumps(report, indent=1) + "\n")
    md = markdown(report)
    out.with_suffix(".md").write_text(md)
    print(md)
    print(f"model_load: wrote {out} ({time.monotonic() - t0:.0f} s)")
    return 0 if all(c["ok"] for c in cases) else 1


def summarize(r: dict) -> None:
    """Ratios and the targets' verdicts."""
    by = {c["label"]: c for c in r["cases"]}
    weights = r["model"]["weight_bytes"]

    def load_s(label):
        c = by.get(label)
        return c["result"].get("load_s") if c and c.get("ok") and c.get("result") else None

    natives = [x for x in (load_s("load native"), load_s("load native again")) if x]
    native = min(natives) if natives else None
    for c in r["cases"]:
        res, st, ca = c.get("result") or {}, c.get("stats") or {}, c.get("cache") or {}
        if c["label"].startswith("load"):
            if native and res.get("load_s"):
                c["ratio_to_native"] = round(res["load_s"] / native, 3)
            if st:
                c["sent_fraction_of_weights"] = round(st["bytes_to_server"] / weights, 5)
        elif ca.get("image_bytes"):
            sent = ca.get("image_inline_bytes", 0) + ca.get("image_miss_bytes_sent", 0)
            c["module_bytes"] = ca["image_bytes"]
            c["module_bytes_sent"] = sent
            c["module_sent_fraction"] = round(sent / ca["image_bytes"], 5)
    warm, sw = by.get("load warm"), by.get("startup warm")
    r["targets"] = {
        "warm_load_sends_le_1pct": warm.get("sent_fraction_of_weights", 1) <= 0.01 if warm else None,
        "warm_load_le_1_5x_native": (warm.get("ratio_to_native", 99) <= 1.5) if warm and native else None,
        "warm_startup_sends_le_1pct_modules": (sw.get("module_sent_fraction", 1) <= 0.01) if sw else None,
    }


def _fmt_bytes(n) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return str(n)


def markdown(r: dict) -> str:
    m = r["model"]
    lines = [f"### model_load: {m['weight_bytes'] / 2**30:.2f} GiB safetensors ({m['tensors']} bf16 tensors), "
             f"{r['mbps']} Mbit/s, {r['rtt_us'] / 1000:g} ms RTT (gpuwire-netem), loader: {r['loader']}", "",
             "| case | load s | vs native | sent to server | of weights | hits | bytes avoided | hashed | memo |",
             "|---|---|---|---|---|---|---|---|---|"]
    for c in r["cases"]:
        if not c["label"].startswith("load"):
            continue
        res, st, ca = c.get("result") or {}, c.get("stats") or {}, c.get("cache") or {}
        if not c["ok"]:
            lines.append(f"| {c['label']} | FAILED: {c.get('error', '')} |||||||| ")
            continue
        frac = c.get("sent_fraction_of_weights")
        lines.append(f"| {c['label']} | {res.get('load_s')} | {c.get('ratio_to_native', '-')} | "
                     f"{_fmt_bytes(st.get('bytes_to_server')) if st else '-'} | "
                     f"{f'{100 * frac:.2f}%' if frac is not None else '-'} | {ca.get('hits', '-')} | "
                     f"{_fmt_bytes(ca.get('bytes_avoided')) if ca else '-'} | "
                     f"{_fmt_bytes(ca.get('hashed_bytes')) if ca else '-'} | "
                     f"{_fmt_bytes(ca.get('memo_bytes')) if ca else '-'} |")
    starts = [c for c in r["cases"] if c["label"].startswith("startup")]
    if starts:
        lines += ["", "| start-up (import, first cuBLAS matmul, first cuDNN conv) | total s | module bytes | "
                      "module bytes sent | of modules | bytes to server |", "|---|---|---|---|---|---|"]
        for c in starts:
            res, st = c.get("result") or {}, c.get("stats") or {}
            frac = c.get("module_sent_fraction")
            lines.append(f"| {c['label']} | {res.get('total_s', 'FAILED' if not c['ok'] else '-')} | "
                         f"{_fmt_bytes(c.get('module_bytes'))} | {_fmt_bytes(c.get('module_bytes_sent'))} | "
                         f"{f'{100 * frac:.2f}%' if frac is not None else '-'} | "
                         f"{_fmt_bytes(st.get('bytes_to_server')) if st else '-'} |")
    t = r.get("targets", {})
    lines += ["", "targets: " + ", ".join(f"{k} {'PASS' if v else 'FAIL' if v is not None else 'n/a'}"
                                         for k, v in t.items()), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == CHILD:
        kind = sys.argv[2]
        res = child_startup() if kind == "startup" else child_load(sys.argv[3], sys.argv[4])
        print(json.dumps({"bench": "model_load", "case": kind, **res}), flush=True)
        sys.exit(0 if res.get("verified", True) else 3)
    sys.exit(main())
