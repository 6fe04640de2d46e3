"""The driver's compile cache (export table da9151d3, native/client/private/nvrtc_cache.c):
NVRTC keeps what it compiled there. Driven slot by slot through ctypes, as NVRTC
calls it, and with NVRTC itself where the nvidia-cuda-nvrtc wheel is installed
(the test extras install it)."""

import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import GPUWIRE, explain, gpuwire_env, gw_run, nvrtc_library

# One process's session with the table: a list of steps from the JSON file
# argv[1], each [op, kind, key, options, data]; prints one result per step.
DRIVER = r"""
import ctypes, json, sys
lib = ctypes.CDLL("libcuda.so.1")
assert lib.cuInit(0) == 0
uuid = bytes.fromhex("da9151d33ae6cc41a5c04f26d533e328")
table = ctypes.POINTER(ctypes.c_void_p)()
rc = lib.cuGetExportTable(ctypes.byref(table), uuid)
assert rc == 0, rc
size = table[0]
F = ctypes.CFUNCTYPE
U, P = ctypes.c_uint64, ctypes.c_void_p
open_ = F(ctypes.c_int, P, U, ctypes.c_char_p, U, ctypes.c_char_p)(table[1])
close = F(ctypes.c_int, P)(table[2])
lookup = F(ctypes.c_int, P, U, P, P)(table[3])
store = F(ctypes.c_int, P, U, ctypes.c_char_p, U)(table[4])
release = F(ctypes.c_int, P, P, U, U, U)(table[6])
out = [size]
for step in json.load(open(sys.argv[1])):
    op, kind, key, opts = step[0], step[1], step[2].encode(), step[3].encode()
    h = P()
    rc = open_(ctypes.byref(h), kind, key, len(key), opts)
    if rc:
        out.append(["refused", rc]); continue
    if op == "get":
        data, n = P(), ctypes.c_uint32()
        rc = lookup(h, 0, ctypes.byref(data), ctypes.byref(n))
        got = ctypes.string_at(data, n.value).decode() if rc == 0 else None
        if rc == 0:
            assert release(data, 0, n.value, n.value, 0) == 0
        out.append([rc, got])
    else:
        out.append([store(h, 0, step[4].encode(), len(step[4]))])
    assert close(h) == 0
print("RESULT " + json.dumps(out))
"""

NOT_FOUND = 500


def session(server, tmp_path, steps, env=None, name="stats.json"):
    stats = tmp_path / name
    e = {"GPUWIRE_COMPILE_CACHE": str(tmp_path / "cc")}
    e.update(env or {})
    plan = tmp_path / (name + ".steps")
    plan.write_text(json.dumps(steps))
    r = gw_run([sys.executable, "-c", DRIVER, str(plan)], server=server.address, stats=stats, env=e, timeout=60)
    assert r.returncode == 0, explain(r, server)
    line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    res = json.loads(line[len("RESULT "):])
    assert res[0] == 7 * 8, f"table size word {res[0]}"
    figures = json.loads(stats.read_text())["compile_cache"] if stats.exists() else {}
    return res[1:], figures


def entries(tmp_path):
    return sorted(p for p in (tmp_path / "cc").rglob("*") if p.is_file())


def test_store_then_hit_in_another_process(server, tmp_path):
    res, fig = session(server, tmp_path, [["get", 2, "bitcode-A", " -arch=compute_90", ""],
                                          ["put", 2, "bitcode-A", " -arch=compute_90", "PTX for A"]])
    assert res == [[NOT_FOUND, None], [0]]
    assert fig["lookups"] == 1 and fig["hits"] == 0 and fig["stores"] == 1
    res, fig = session(server, tmp_path, [["get", 2, "bitcode-A", " -arch=compute_90", ""]], name="s2.json")
    assert res == [[0, "PTX for A"]]
    assert fig["hits"] == 1 and fig["hit_bytes"] == len("PTX for A")
    assert not [p for p in entries(tmp_path) if p.name.startswith(".tmp")], "temporary files left behind"


def test_options_and_kind_name_separate_entries(server, tmp_path):
    """NVRTC's key (the program's bitcode) is the same for every target; the
    options string names the target, so it must be part of the entry's name.
    A cubin's entry is also named by the PTX it is made from: the PTX this
    thread last looked up or stored for the same key; without one it is opened
    blind: never found, never stored."""
    session(server, tmp_path, [["put", 2, "bc", " -arch=compute_90", "ptx90"],
                               ["put", 1, "bc", " -arch=sm_90", "cubin90"]])
    res, _ = session(server, tmp_path, [["get", 2, "bc", " -arch=compute_80", ""],
                                        ["get", 1, "bc", " -arch=sm_80", ""],
                                        ["get", 2, "bc", " -arch=compute_90", ""],
                                        ["get", 1, "bc", " -arch=compute_90", ""],
                                        ["get", 1, "other bc", " -arch=sm_90", ""],
                                        ["get", 1, "bc", " -arch=sm_90", ""]], name="s2.json")
    assert res == [[NOT_FOUND, None], [NOT_FOUND, None], [0, "ptx90"], [NOT_FOUND, None], [NOT_FOUND, None],
                   [0, "cubin90"]]
    # the same key and options compiled to other PTX (other NVRTC options): not that cubin
    res, _ = session(server, tmp_path, [["put", 2, "bc", " -arch=compute_90 -ftz=1", "fast ptx"],
                                        ["get", 1, "bc", " -arch=sm_90", ""]], name="s3.json")
    assert res == [[0], [NOT_FOUND, None]]


def test_cubin_entry_without_its_ptx_is_blind_not_refused(server, tmp_path):
    """nvJitLink 13.0's order: a PTX lookup that misses, then a cubin entry
    opened with no PTX stored between. Refusing that open crashed it (numba
    on the H100); the entry opens, misses, and drops what is stored in it."""
    res, fig = session(server, tmp_path, [["get", 2, "lto", " -arch=sm_90", ""],
                                          ["get", 1, "lto", " -arch=sm_90", ""],
                                          ["put", 1, "lto", " -arch=sm_90", "cubin of unknown PTX"]])
    assert res == [[NOT_FOUND, None], [NOT_FOUND, None], [0]]
    assert fig["stores"] == 0 and not entries(tmp_path)
    # with the PTX stored first, the same cubin entry is a real one
    res, fig = session(server, tmp_path, [["put", 2, "lto", " -arch=sm_90", "ptx"],
                                          ["put", 1, "lto", " -arch=sm_90", "cubin"],
                                          ["get", 2, "lto", " -arch=sm_90", ""],
                                          ["get", 1, "lto", " -arch=sm_90", ""]], name="s2.json")
    assert res == [[0], [0], [0, "ptx"], [0, "cubin"]]


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_entry_is_discarded_not_used(server, tmp_path, damage):
    session(server, tmp_path, [["put", 2, "k", "o", "the right bytes"]])
    [path] = entries(tmp_path)
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[-3] ^= 0x20
    else:
        data = data[:-4]
    path.write_bytes(bytes(data))
    res, fig = session(server, tmp_path, [["get", 2, "k", "o", ""]], name="s2.json")
    assert res == [[NOT_FOUND, None]]
    assert fig["discarded"] == 1
    assert not path.exists(), "a damaged entry must be removed"
    session(server, tmp_path, [["put", 2, "k", "o", "the right bytes"]], name="s3.json")
    res, _ = session(server, tmp_path, [["get", 2, "k", "o", ""]], name="s4.json")
    assert res == [[0, "the right bytes"]]


@pytest.mark.parametrize("env", [{"CUDA_CACHE_DISABLE": "1"}, {"GPUWIRE_COMPILE_CACHE": "off"}])
def test_disabled_cache_refuses_like_the_driver(server, tmp_path, env):
    res, fig = session(server, tmp_path, [["put", 2, "k", "o", "x"], ["get", 2, "k", "o", ""]], env=env)
    assert res == [["refused", 1], ["refused", 1]]
    assert fig["stores"] == 0
    assert not (tmp_path / "off").exists()


def test_cap_evicts_least_recently_used(server, tmp_path):
    blob = "x" * 8000
    steps = [["put", 2, f"key{i}", "o", blob + str(i)] for i in range(40)]
    res, fig = session(server, tmp_path, steps, env={"CUDA_CACHE_MAXSIZE": str(96 * 1024)})
    assert all(r == [0] for r in res)
    total = sum(p.stat().st_size for p in entries(tmp_path))
    assert total <= 96 * 1024, f"{total} bytes kept under a cap of {96 * 1024}"
    assert fig["evicted"] > 0
    res, _ = session(server, tmp_path, [["get", 2, "key39", "o", ""], ["get", 2, "key0", "o", ""]], name="s2.json")
    assert res[0] == [0, blob + "39"], "the newest entry must survive eviction"
    assert res[1] == [NOT_FOUND, None], "the oldest entry should have gone"


def test_concurrent_processes_share_one_folder(server, tmp_path):
    def writer(i):
        return session(server, tmp_path, [["put", 2, "shared", "o", "same content"],
                                          ["put", 2, f"own{i}", "o", f"content {i}"],
                                          ["get", 2, "shared", "o", ""]], name=f"w{i}.json")[0]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(writer, range(4)))
    for r in results:
        assert r[2] == [0, "same content"]
    res, _ = session(server, tmp_path, [["get", 2, f"own{i}", "o", ""] for i in range(4)], name="r.json")
    assert res == [[0, f"content {i}"] for i in range(4)]
    assert not [p for p in entries(tmp_path) if p.name.startswith(".tmp")]


@pytest.mark.parametrize("where", ["folder", "off"])
def test_run_flag_names_the_folder(server, tmp_path, where):
    """`gpuwire run --compile-cache DIR|off` is where the cache goes, or that it is off."""
    import subprocess

    plan = tmp_path / "steps.json"
    plan.write_text(json.dumps([["put", 2, "k", "o", "x"]]))
    folder = tmp_path / "chosen"
    flag = str(folder) if where == "folder" else "off"
    env = gpuwire_env({"HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(tmp_path / "xdg")})
    env.pop("GPUWIRE_COMPILE_CACHE", None)
    r = subprocess.run(GPUWIRE + ["run", "--server", server.address, "--compile-cache", flag, "--",
                                  sys.executable, "-c", DRIVER, str(plan)],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")][-1][7:])
    if where == "folder":
        assert res[1:] == [[0]] and len([p for p in folder.rglob("*") if p.is_file()]) == 1
    else:
        assert res[1:] == [["refused", 1]] and not folder.exists()
    assert not (tmp_path / "xdg").exists() and not (tmp_path / "home").exists()


# ---- with NVRTC itself ----

# argv: libnvrtc, then the options (the first one -arch=...)
NVRTC_PROGRAM = r"""
import ctypes, hashlib, json, struct, sys
lib = ctypes.CDLL(sys.argv[1])
SRC = (b'extern "C" __global__ void k(float *y, const float *x, int n) {'
       b'  float acc = 0;'
       b'  for (int i = 0; i < n; i++) acc += __sinf(x[i] * y[threadIdx.x]) * __expf(x[(i * 7) % n]);'
       b'  y[threadIdx.x] = acc; }')
prog = ctypes.c_void_p()
assert lib.nvrtcCreateProgram(ctypes.byref(prog), SRC, b"t.cu", 0, None, None) == 0
opts = [o.encode() for o in sys.argv[2:]]
rc = lib.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts))
n, m = ctypes.c_size_t(), ctypes.c_size_t()
assert lib.nvrtcGetCUBINSize(prog, ctypes.byref(n)) == 0 and lib.nvrtcGetPTXSize(prog, ctypes.byref(m)) == 0
cubin, ptx = ctypes.create_string_buffer(n.value), ctypes.create_string_buffer(m.value)
assert lib.nvrtcGetCUBIN(prog, cubin) == 0 and lib.nvrtcGetPTX(prog, ptx) == 0
print("RESULT " + json.dumps({"rc": rc, "sm": (struct.unpack_from("<I", cubin.raw, 0x30)[0] >> 8) & 0xff,
                              "cubin": hashlib.sha256(cubin.raw).hexdigest(), "ptx": hashlib.sha256(ptx.raw).hexdigest()}))
"""


def nvrtc_compile(server, lib, folder, options, stats=None):
    env = {"GPUWIRE_COMPILE_CACHE": str(folder), "MALLOC_CHECK_": "3",
           "LD_LIBRARY_PATH": os.path.dirname(lib) + ":" + os.environ.get("LD_LIBRARY_PATH", "")}
    r = gw_run([sys.executable, "-c", NVRTC_PROGRAM, lib, *options], server=server.address, stats=stats, env=env,
               timeout=120)
    assert r.returncode == 0, explain(r, server)
    res = json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")][-1][7:])
    assert res["rc"] == 0, res
    return res


def test_nvrtc_compiles_hit_and_keep_their_target(server, tmp_path):
    lib = nvrtc_library()
    if not lib:
        pytest.skip("no libnvrtc (pip install nvidia-cuda-nvrtc, or set GPUWIRE_TEST_NVRTC)")
    seen = []
    for i, arch in enumerate(["sm_90", "sm_90", "sm_80", "sm_80"]):
        stats = tmp_path / f"s{i}.json"
        res = nvrtc_compile(server, lib, tmp_path / "cc", [f"-arch={arch}"], stats)
        assert res["sm"] == int(arch[3:]), f"{arch} compile produced code for sm_{res['sm']}"
        seen.append(json.loads(stats.read_text())["compile_cache"])
    assert seen[0]["hits"] == 0 and seen[0]["stores"] == 2, seen[0]  # the PTX and the cubin
    assert seen[1]["hits"] == 2 and seen[1]["stores"] == 0, seen[1]
    assert seen[2]["hits"] == 0, "an sm_80 compile must not be answered with sm_90 code"
    assert seen[3]["hits"] == 2


# Option sets whose PTX or cubin differ from each other's while NVRTC's key
# (the program's bitcode) stays the same: --use_fast_math after the plain
# compile was once handed the plain compile's cubin.
OPTION_SETS = [["-arch=sm_90"], ["-arch=sm_90", "--use_fast_math"], ["-arch=sm_90", "-maxrregcount=16"],
               ["-arch=sm_90", "-Xptxas=-O0"], ["-arch=sm_90", "-lineinfo"], ["-arch=sm_80"],
               ["-arch=sm_80", "--use_fast_math"]]


def test_nvrtc_output_same_as_uncached_cold_and_warm(server, tmp_path):
    lib = nvrtc_library()
    if not lib:
        pytest.skip("no libnvrtc (pip install nvidia-cuda-nvrtc, or set GPUWIRE_TEST_NVRTC)")
    want = [nvrtc_compile(server, lib, "off", o) for o in OPTION_SETS]
    assert len({(w["ptx"], w["cubin"]) for w in want}) == len(OPTION_SETS), "the option sets should all differ"
    for rnd in ("cold", "warm"):
        for o, w in zip(OPTION_SETS, want):
            got = nvrtc_compile(server, lib, tmp_path / "cc", o)
            assert (got["ptx"], got["cubin"]) == (w["ptx"], w["cubin"]), f"{rnd} {' '.join(o)}: differs from uncached"
