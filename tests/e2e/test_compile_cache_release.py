"""Who owns what the compile cache's lookup hands out (export table da9151d3,
native/client/private/nvrtc_cache.c): the caller, until it gives it back
through slot 6, which may come after close. NVRTC releases before close;
nvJitLink 13.0 keeps the pointer as its link's cubin past close and releases
it when the link is destroyed. gpuwire freed it at close, and every numba-cuda
link whose cubin came from the cache failed with nvJitLink's ERROR_INTERNAL
(issue 14). Driven slot by slot in nvJitLink's order (no NVIDIA library
needed), and with NVRTC and nvJitLink themselves where their wheels are found."""

import glob
import json
import os
import site
import sys

import pytest

from conftest import explain, gw_run, nvrtc_library

# Steps from the JSON file argv[1]; prints one result per step.
#   ["put", kind, key, options, text]
#   ["get-close-use", kind, key, options]: lookup, close, then read the data, then release it
#   ["get-release-close", kind, key, options]: NVRTC's order
#   ["get-twice", kind, key, options]: two lookups on one handle, both released after close
#   ["release-foreign"]: slot 6 with a pointer no lookup handed out
SLOTS = r"""
import ctypes, json, sys
lib = ctypes.CDLL("libcuda.so.1")
assert lib.cuInit(0) == 0
table = ctypes.POINTER(ctypes.c_void_p)()
assert lib.cuGetExportTable(ctypes.byref(table), bytes.fromhex("da9151d33ae6cc41a5c04f26d533e328")) == 0
F, U, P = ctypes.CFUNCTYPE, ctypes.c_uint64, ctypes.c_void_p
open_ = F(ctypes.c_int, P, U, ctypes.c_char_p, U, ctypes.c_char_p)(table[1])
close = F(ctypes.c_int, P)(table[2])
lookup = F(ctypes.c_int, P, U, P, P)(table[3])
store = F(ctypes.c_int, P, U, ctypes.c_char_p, U)(table[4])
release = F(ctypes.c_int, P, U, U, U, U)(table[6])

def opened(kind, key, opts):
    h = P()
    assert open_(ctypes.byref(h), kind, key.encode(), len(key), opts.encode()) == 0
    return h

def get(h):
    data, n = P(), ctypes.c_uint32()
    rc = lookup(h, 0, ctypes.byref(data), ctypes.byref(n))
    return rc, data, n.value

out = []
for step in json.load(open(sys.argv[1])):
    op = step[0]
    if op == "put":
        h = opened(*step[1:4])
        out.append([store(h, 0, step[4].encode(), len(step[4])), close(h)])
    elif op == "get-close-use":
        h = opened(*step[1:4])
        rc, data, n = get(h)
        assert close(h) == 0
        scratch = [ctypes.create_string_buffer(n) for _ in range(8)]  # the heap moves on, as nvJitLink's does
        out.append([rc, ctypes.string_at(data, n).decode(errors="replace"), release(data, 0, 0, 0, 7)])
    elif op == "get-release-close":
        h = opened(*step[1:4])
        rc, data, n = get(h)
        text = ctypes.string_at(data, n).decode(errors="replace")
        out.append([rc, text, release(data, 0, n, n, 0), close(h)])
    elif op == "get-twice":
        h = opened(*step[1:4])
        (rc1, d1, n1), (rc2, d2, n2) = get(h), get(h)
        assert close(h) == 0
        out.append([rc1, rc2, ctypes.string_at(d1, n1).decode(errors="replace"),
                    ctypes.string_at(d2, n2).decode(errors="replace"),
                    release(d1, 0, 0, 0, 7), release(d2, 0, 0, 0, 7)])
    elif op == "release-foreign":
        buf = ctypes.create_string_buffer(b"not the cache's", 64)
        rc = release(ctypes.cast(buf, P), 0, 0, 0, 7)
        out.append([rc, buf.value.decode()])
print("RESULT " + json.dumps(out))
"""

# glibc fills freed memory with this byte's complement: data used after it was
# freed reads as that, not as what was stored
PERTURB = {"MALLOC_PERTURB_": "165"}


def run_slots(server, tmp_path, steps, name):
    plan = tmp_path / f"{name}.json"
    plan.write_text(json.dumps(steps))
    env = {"GPUWIRE_COMPILE_CACHE": str(tmp_path / "cc"), **PERTURB}
    r = gw_run([sys.executable, "-c", SLOTS, str(plan)], server=server.address, env=env, timeout=60)
    assert r.returncode == 0, explain(r, server)
    return json.loads([ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")][-1][len("RESULT "):])


# long enough that most of it lies past what the allocator writes into a freed block
CUBIN = "linked cubin of the whole program " * 40


def test_data_stays_valid_after_close_until_released(server, tmp_path):
    """nvJitLink 13.0's order: open, lookup (hit), close, use the data, release."""
    assert run_slots(server, tmp_path, [["put", 2, "lto-ir", " -arch=sm_90a", CUBIN]], "put") == [[0, 0]]
    res = run_slots(server, tmp_path, [["get-close-use", 2, "lto-ir", " -arch=sm_90a"]], "use")
    assert res[0][0] == 0, "the stored entry was not found"
    assert res[0][1] == CUBIN, "the looked-up data changed after close: it was freed before slot 6 released it"
    assert res[0][2] == 0


def test_nvrtc_order_and_several_lookups_free_each_buffer_once(server, tmp_path):
    """NVRTC's order (release, then close) and two lookups on one handle:
    each buffer is freed once, by its release (glibc aborts on a double free)."""
    run_slots(server, tmp_path, [["put", 2, "bc", " -arch=compute_90", CUBIN]], "put")
    res = run_slots(server, tmp_path, [["get-release-close", 2, "bc", " -arch=compute_90"],
                                       ["get-twice", 2, "bc", " -arch=compute_90"],
                                       ["get-close-use", 2, "bc", " -arch=compute_90"]], "orders")
    assert res[0] == [0, CUBIN, 0, 0]
    assert res[1] == [0, 0, CUBIN, CUBIN, 0, 0]
    assert res[2] == [0, CUBIN, 0]


def test_release_of_a_pointer_no_lookup_lent_frees_nothing(server, tmp_path):
    """Slot 6 with memory the cache never handed out (here a ctypes buffer,
    which free() would abort on): answered 0, the memory left alone."""
    assert run_slots(server, tmp_path, [["release-foreign"]], "foreign") == [[0, "not the cache's"]]


# --- NVRTC and nvJitLink themselves ---

# argv: libnvrtc, libnvJitLink. NVRTC makes LTO-IR of a kernel, nvJitLink links
# it to a cubin for sm_90a (numba-cuda's link); prints the cubin's size and hash.
LINK = r"""
import ctypes, glob, hashlib, os, sys
for b in glob.glob(os.path.dirname(sys.argv[1]) + "/libnvrtc-builtins.so.*"):
    ctypes.CDLL(b)  # NVRTC 13.0's wheel does not find its builtins beside itself when loaded by path
nvrtc, jit = ctypes.CDLL(sys.argv[1]), ctypes.CDLL(sys.argv[2])
assert ctypes.CDLL("libcuda.so.1").cuInit(0) == 0
SRC = b'extern "C" __global__ void bump(float *a, int n) { int i = blockIdx.x * blockDim.x + threadIdx.x; if (i < n) a[i] += 1.0f; }'
prog = ctypes.c_void_p()
assert nvrtc.nvrtcCreateProgram(ctypes.byref(prog), SRC, b"bump.cu", 0, None, None) == 0
opts = [b"-arch=sm_90a", b"-dlto"]
assert nvrtc.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts)) == 0
n = ctypes.c_size_t()
assert nvrtc.nvrtcGetLTOIRSize(prog, ctypes.byref(n)) == 0
ltoir = ctypes.create_string_buffer(n.value)
assert nvrtc.nvrtcGetLTOIR(prog, ltoir) == 0
h = ctypes.c_void_p()
lopts = [b"-arch=sm_90a", b"-lto"]
assert jit.nvJitLinkCreate(ctypes.byref(h), len(lopts), (ctypes.c_char_p * len(lopts))(*lopts)) == 0
assert jit.nvJitLinkAddData(h, 3, ltoir, n, b"bump.ltoir") == 0  # 3: NVJITLINK_INPUT_LTOIR
def failed(step, rc, code):
    m = ctypes.c_size_t()
    jit.nvJitLinkGetErrorLogSize(h, ctypes.byref(m))
    log = ctypes.create_string_buffer(m.value + 1)
    jit.nvJitLinkGetErrorLog(h, log)
    print(f"LINK FAILED {step} -> {rc} log={log.value.decode(errors='replace')!r}")
    sys.exit(code)
rc = jit.nvJitLinkComplete(h)
if rc:
    failed("nvJitLinkComplete", rc, 3)
rc = jit.nvJitLinkGetLinkedCubinSize(h, ctypes.byref(n))
if rc:  # 6, ERROR_INTERNAL: what numba-cuda met through gpuwire (issue 14)
    failed("nvJitLinkGetLinkedCubinSize", rc, 4)
cubin = ctypes.create_string_buffer(n.value)
assert jit.nvJitLinkGetLinkedCubin(h, cubin) == 0
assert jit.nvJitLinkDestroy(ctypes.byref(h)) == 0
print(f"CUBIN {n.value} {hashlib.sha256(cubin.raw).hexdigest()}")
"""


def nvjitlink_library():
    """GPUWIRE_TEST_NVJITLINK, else the nvidia-nvjitlink wheel's, else the toolkit's."""
    found = [os.environ.get("GPUWIRE_TEST_NVJITLINK", "")]
    for d in site.getsitepackages() + [site.getusersitepackages()]:
        found += glob.glob(d + "/nvidia/cu13/lib/libnvJitLink.so.13") + glob.glob(d + "/nvidia/nvjitlink/lib/libnvJitLink.so*")
    found += glob.glob("/usr/local/cuda/lib64/libnvJitLink.so.1*")
    return next((f for f in found if f and os.path.exists(f)), None)


def test_nvjitlink_links_again_from_a_warm_cache(server, tmp_path):
    """The link twice in two processes sharing one cache folder: the second
    takes its cubin from the cache (nvJitLink 13.0 does) and must get the same."""
    nvrtc, jit = nvrtc_library(), nvjitlink_library()
    if not nvrtc or not jit:
        pytest.skip("needs libnvrtc and libnvJitLink (nvidia-cuda-nvrtc, nvidia-nvjitlink; "
                    "or GPUWIRE_TEST_NVRTC, GPUWIRE_TEST_NVJITLINK)")
    uncached = gw_run([sys.executable, "-c", LINK, nvrtc, jit], server=server.address,
                      env={"GPUWIRE_COMPILE_CACHE": "off"}, timeout=120)
    if uncached.returncode == 3:
        pytest.skip(f"this NVRTC and nvJitLink do not link even without the cache: {uncached.stdout.strip()}")
    assert uncached.returncode == 0, explain(uncached, server)
    want = [ln for ln in uncached.stdout.splitlines() if ln.startswith("CUBIN ")][-1]
    env = {"GPUWIRE_COMPILE_CACHE": str(tmp_path / "cc"), **PERTURB}
    for attempt in ("cold", "warm"):
        r = gw_run([sys.executable, "-c", LINK, nvrtc, jit], server=server.address, env=env, timeout=120)
        assert r.returncode == 0, f"{attempt} cache: " + explain(r, server)
        got = [ln for ln in r.stdout.splitlines() if ln.startswith("CUBIN ")][-1]
        assert got == want, f"{attempt} cache: the linked cubin differs from an uncached link's"
