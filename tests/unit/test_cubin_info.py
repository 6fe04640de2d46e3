"""The client's cubin reader (native/client/state/cubin_info.c, gw_cubin_parse): entry kernels,
parameter layouts, static shared memory, registers and launch bounds, read from the ELF.

A small dumper that includes cubin_info.c is built here with `cc` (under ASan/UBSan where
cc has them) and run on cubins from nvcc (the test programs' kernels, compared with
tests/standin/kparams.py) and from NVRTC (kernels whose layouts are known), and on hostile
input: truncations, byte flips, targeted corruptions, PTX text, fatbin headers. A parse
either fails (-1) or gives a result that keeps every promise; it never crashes or reads
out of bounds."""

import os
import random
import shutil
import struct
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import nvrtc_library

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "native" / "client" / "state"
KPARAMS = ROOT / "tests" / "standin" / "kparams.py"
PROGRAMS = ROOT / "tests" / "programs"

# The native build's flags (native/Makefile), so a warning here is one there too.
BUILD_FLAGS = ["-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "-fPIC"]

DUMPER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cubin_info.c"

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(len ? (size_t)len : 1);
    if (!b || fread(b, 1, (size_t)len, f) != (size_t)len) exit(2);
    fclose(f);
    *n = (size_t)len;
    return b;
}

/* What rc == 0 promises; and on -1, *out must be all zero. */
static int sane(int rc, const gw_cubin_info *in)
{
    if (rc != 0) {
        const unsigned char *z = (const unsigned char *)in;
        for (size_t i = 0; i < sizeof *in; i++)
            if (z[i]) return 0;
        return rc == -1;
    }
    if (in->sm == 0 || (in->n && !in->k)) return 0;
    for (uint32_t i = 0; i < in->n; i++) {
        const gw_cubin_kernel *k = &in->k[i];
        if (!k->name || !k->name[0] || (k->nparams == 0) != (k->pairs == NULL)) return 0;
        uint64_t end = 0;
        for (uint32_t j = 0; j < k->nparams; j++) {
            if (k->pairs[2 * j] < end) return 0;
            end = (uint64_t)k->pairs[2 * j] + k->pairs[2 * j + 1];
        }
        if (k->param_bytes < end) return 0;
    }
    return 1;
}

/* per kernel: "name nparams off:size ... static_shared regs max_threads", then "@ name param_bytes" */
static void show(const char *tag, int rc, const gw_cubin_info *in)
{
    printf("# %s rc=%d sm=%u n=%u %s\n", tag, rc, in->sm, in->n, sane(rc, in) ? "ok" : "BAD");
    for (uint32_t i = 0; i < in->n; i++) {
        const gw_cubin_kernel *k = &in->k[i];
        printf("%s %u", k->name, k->nparams);
        for (uint32_t j = 0; j < k->nparams; j++)
            printf(" %u:%u", k->pairs[2 * j], k->pairs[2 * j + 1]);
        printf(" %u %u %u\n@ %s %u\n", k->static_shared, k->num_regs, k->max_threads, k->name, k->param_bytes);
    }
}

/* mode 0: size = the buffer's length; 1: size 0 (the ELF's own extent); 2: a NULL image */
static void one(const char *tag, const unsigned char *data, size_t len, int mode)
{
    unsigned char *b = calloc(len ? len : 1, 1); /* exactly len bytes: ASan sees any over-read */
    memcpy(b, data, len);
    gw_cubin_info info;
    memset(&info, 0xAB, sizeof info); /* must come back zeroed on -1 */
    int rc = gw_cubin_parse(mode == 2 ? NULL : b, mode == 0 ? len : 0, &info);
    show(tag, rc, &info);
    gw_cubin_free(&info);
    gw_cubin_free(&info); /* freeing twice is harmless: free zeroes */
    free(b);
}

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[1], "batch") == 0) {
        /* records: u32 length, u8 mode, bytes */
        size_t n, i = 0;
        unsigned char *all = slurp(argv[2], &n);
        char tag[32];
        for (int r = 0; i + 5 <= n; r++) {
            uint32_t len;
            memcpy(&len, all + i, 4);
            int mode = all[i + 4];
            if (len > n - i - 5) return 3;
            snprintf(tag, sizeof tag, "%d", r);
            one(tag, all + i + 5, len, mode);
            i += 5 + (size_t)len;
        }
        free(all);
        return 0;
    }
    for (int a = 1; a < argc; a++) {
        size_t n;
        unsigned char *b = slurp(argv[a], &n);
        one(argv[a], b, n, 0);
        free(b);
    }
    gw_cubin_parse(NULL, 0, NULL); /* no out: refused, no crash */
    return 0;
}
"""


def find_nvcc():
    return shutil.which("nvcc") or next((p for p in ["/usr/local/cuda/bin/nvcc"] if os.path.exists(p)), None)


# Compiles argv[3] (CUDA C++) with NVRTC argv[1] and options argv[4:] to the cubin argv[2].
# In a subprocess: NVRTC stays out of the test process.
NVRTC_COMPILE = r"""
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
src = open(sys.argv[3], "rb").read()
prog = ctypes.c_void_p()
assert lib.nvrtcCreateProgram(ctypes.byref(prog), src, b"k.cu", 0, None, None) == 0
opts = [o.encode() for o in sys.argv[4:]]
rc = lib.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts))
n = ctypes.c_size_t()
lib.nvrtcGetProgramLogSize(prog, ctypes.byref(n))
log = ctypes.create_string_buffer(n.value)
lib.nvrtcGetProgramLog(prog, log)
if rc:
    sys.exit("nvrtc: %d %s" % (rc, log.value.decode(errors="replace")))
assert lib.nvrtcGetCUBINSize(prog, ctypes.byref(n)) == 0 and n.value > 0
cubin = ctypes.create_string_buffer(n.value)
assert lib.nvrtcGetCUBIN(prog, cubin) == 0
open(sys.argv[2], "wb").write(cubin.raw)
"""

# Kernels whose layouts are known. helper is a device function: never an entry.
NVRTC_SRC = r"""
struct __align__(16) A16 { float x, y, z, w; };
struct Arr5 { int v[5]; };
struct Big { char v[20000]; };
__device__ __noinline__ int helper(int x) { return x * 3 + (x >> 2); }
extern "C" __global__ void k_none() {}
extern "C" __global__ void k_scalars(char c, short s, double d, int *out)
{
    out[0] = c + s + (int)d + helper(threadIdx.x);
}
extern "C" __global__ void k_align16(char c, A16 a, int *out) { out[0] = c + (int)a.w; }
extern "C" __global__ void k_array(int *p, Arr5 a, float f) { p[0] = a.v[threadIdx.x % 5] + (int)f; }
extern "C" __global__ void __launch_bounds__(256) k_bounds(float *x) { x[threadIdx.x] *= 2.f; }
extern "C" __global__ void k_shared(float *x)
{
    __shared__ float s[100];
    s[threadIdx.x % 100] = x[threadIdx.x];
    __syncthreads();
    x[threadIdx.x] = s[(threadIdx.x + 1) % 100];
}
extern "C" __global__ void k_shared2(double *x)
{
    __shared__ double a[64];
    __shared__ int b[32];
    a[threadIdx.x % 64] = x[threadIdx.x];
    b[threadIdx.x % 32] = (int)x[threadIdx.x + 1];
    __syncthreads();
    x[threadIdx.x] = a[(threadIdx.x + 1) % 64] + b[(threadIdx.x + 3) % 32];
}
extern "C" __global__ void k_big(Big b, int *out) { out[0] = b.v[threadIdx.x]; }
template <typename T> __global__ void k_tmpl(T *x, T v) { x[threadIdx.x] = v; }
template __global__ void k_tmpl<short>(short *, short);
"""

# name: (pairs, param_bytes, static_shared, max_threads)
NVRTC_EXPECTED = {
    "k_none": ([], 0, 0, 0),
    "k_scalars": ([(0, 1), (2, 2), (8, 8), (16, 8)], 24, 0, 0),
    "k_align16": ([(0, 1), (16, 16), (32, 8)], 40, 0, 0),
    "k_array": ([(0, 8), (8, 20), (28, 4)], 32, 0, 0),
    "k_bounds": ([(0, 8)], 8, 0, 256),
    "k_shared": ([(0, 8)], 8, 400, 0),
    "k_shared2": ([(0, 8)], 8, 640, 0),
    "k_big": ([(0, 20000), (20000, 8)], 20008, 0, 0),  # past 4 KiB: EIATTR_KPARAM_INFO_V2
    "_Z6k_tmplIsEvPT_S0_": ([(0, 8), (8, 2)], 10, 0, 0),
}

# .maxntid with y and z (ptxas writes EIATTR_MAX_THREADS x, y, z); .reqntid is another attribute
PTX_SRC = r"""
.version 8.0
.target sm_90
.address_size 64
.visible .entry mt3(.param .u64 p) .maxntid 16, 8, 2 { ret; }
.visible .entry mt2(.param .u64 p, .param .u32 q) .maxntid 64, 2 { ret; }
.visible .entry rq3(.param .u64 p) .reqntid 4, 4, 4 { ret; }
.entry hidden_entry(.param .align 16 .b8 s[48], .param .u8 c) { ret; }
"""


# ---- helpers ----

class Parsed:
    def __init__(self, rc, sm, ok, kernels, param_bytes):
        self.rc, self.sm, self.ok, self.kernels, self.param_bytes = rc, sm, ok, kernels, param_bytes

    def key(self):
        return (self.rc, self.sm, sorted(self.kernels.items()), sorted(self.param_bytes.items()))


def parse_output(text):
    """The dumper's output as a list of Parsed, one per '# ' header."""
    out = []
    for line in text.splitlines():
        if line.startswith("# "):
            f = dict(x.split("=") for x in line.split()[2:5])
            out.append(Parsed(int(f["rc"]), int(f["sm"]), line.endswith(" ok"), {}, {}))
        elif line.startswith("@ "):
            _, name, pb = line.split()
            out[-1].param_bytes[name] = int(pb)
        elif line.strip():
            f = line.split()
            name, nparams, pairs, tail = f[0], int(f[1]), f[2:-3], f[-3:]
            assert len(pairs) == nparams, line
            out[-1].kernels[name] = ([tuple(map(int, p.split(":"))) for p in pairs], *map(int, tail))
    return out


def run_dumper(dumper, args, cwd):
    r = subprocess.run([str(dumper), *map(str, args)], capture_output=True, text=True, timeout=120, cwd=cwd,
                       env={**os.environ, "ASAN_OPTIONS": "detect_leaks=1:halt_on_error=1",
                            "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1"})
    # a sanitizer report is a failure even if the exit code were 0
    assert r.returncode == 0 and "Sanitizer" not in r.stderr and "runtime error" not in r.stderr, \
        f"dumper rc={r.returncode}\n{r.stderr[-4000:]}"
    return r.stdout


def batch(dumper, tmp_path, images):
    """images: list of (bytes, mode); returns one Parsed per image."""
    path = tmp_path / f"batch{len(list(tmp_path.glob('batch*.bin')))}.bin"  # kept, to replay a failure
    with open(path, "wb") as f:
        for data, mode in images:
            f.write(struct.pack("<IB", len(data), mode) + data)
    res = parse_output(run_dumper(dumper, ["batch", path], tmp_path))
    assert len(res) == len(images)
    return res


def elf_sections(data):
    """[(name, type, offset, size, header offset)] of a little-endian ELF64."""
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shnum, shstrndx = struct.unpack_from("<HH", data, 0x3C)
    heads = [(shoff + i * 64,) + struct.unpack_from("<IIQQQQ", data, shoff + i * 64) for i in range(shnum)]
    stroff = heads[shstrndx][5]
    out = []
    for hoff, name, typ, _flags, _addr, off, size in heads:
        end = data.index(b"\0", stroff + name)
        out.append((data[stroff + name:end].decode(), typ, off, size, hoff))
    return out


def section(data, name):
    return next(s for s in elf_sections(data) if s[0] == name)


def nvinfo_records(data, name):
    """(offset in file, fmt, attr, payload offset, payload size) of each record of section `name`."""
    _, _, off, size, _ = section(data, name)
    p, out = off, []
    while p + 4 <= off + size:
        fmt, attr, sz = struct.unpack_from("<BBH", data, p)
        if fmt == 4:
            out.append((p, fmt, attr, p + 4, sz))
            p += 4 + sz
        else:
            out.append((p, fmt, attr, p + 2, 2))
            p += 4
    return out


def symbols(data):
    """name -> file offset of its Elf64_Sym."""
    secs = elf_sections(data)
    symtab = next(s for s in secs if s[1] == 2)
    link = struct.unpack_from("<I", data, symtab[4] + 0x28)[0]
    stroff = secs[link][2]
    out = {}
    for i in range(symtab[3] // 24):
        at = symtab[2] + i * 24
        nm = struct.unpack_from("<I", data, at)[0]
        out[data[stroff + nm:data.index(b"\0", stroff + nm)].decode()] = at
    return out


# ---- fixtures ----

@pytest.fixture(scope="module")
def dumper(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no C compiler")
    d = tmp_path_factory.mktemp("cubin_dumper")
    (d / "dump.c").write_text(DUMPER)
    base = [cc, *BUILD_FLAGS, "-O1", "-g", f"-I{CLIENT}", "-o", str(d / "dump"), str(d / "dump.c")]
    san = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]
    r = subprocess.run(base[:1] + san + base[1:], capture_output=True, text=True)
    if r.returncode == 0 and subprocess.run([str(d / "dump")], capture_output=True).returncode == 0:
        return d / "dump"
    # no sanitizer runtime here (or one that cannot run): the plain build still checks behaviour
    r = subprocess.run(base, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return d / "dump"


@pytest.fixture(scope="module")
def nvrtc_cubins(tmp_path_factory):
    """{(arch, rdc): cubin path} from NVRTC, or skip."""
    lib = nvrtc_library()
    if not lib:
        pytest.skip("no libnvrtc (pip install nvidia-cuda-nvrtc, or set GPUWIRE_TEST_NVRTC)")
    d = tmp_path_factory.mktemp("nvrtc")
    (d / "k.cu").write_text(NVRTC_SRC)
    jobs = {(a, rdc): d / f"k_{a}{'_rdc' if rdc else ''}.cubin"
            for a in ("sm_80", "sm_90", "sm_90a") for rdc in (False, True)}

    def compile_one(item):
        (arch, rdc), out = item
        opts = [f"-arch={arch}"] + (["-rdc=true"] if rdc else [])
        return subprocess.run([sys.executable, "-c", NVRTC_COMPILE, lib, str(out), str(d / "k.cu"), *opts],
                              capture_output=True, text=True, timeout=120)

    with ThreadPoolExecutor(4) as ex:
        for r in ex.map(compile_one, jobs.items()):
            assert r.returncode == 0, r.stdout + r.stderr
    return jobs


@pytest.fixture(scope="module")
def nvcc_cubins(tmp_path_factory):
    """{name: cubin path} for tests/programs/*.cu (sm_90, and sm_80 for two) and the PTX above, or skip."""
    nvcc = find_nvcc()
    if not nvcc:
        pytest.skip("nvcc not found (looked on PATH, then in /usr/local/cuda/bin)")
    d = tmp_path_factory.mktemp("nvcc")
    (d / "bounds.ptx").write_text(PTX_SRC)
    jobs = {f"{src.stem}.sm_90": (src, "sm_90") for src in sorted(PROGRAMS.glob("*.cu"))}
    jobs.update({f"{s}.sm_80": (PROGRAMS / f"{s}.cu", "sm_80") for s in ("multi_module_ops", "driver_api_kernels")})
    jobs["bounds_ptx.sm_90"] = (d / "bounds.ptx", "sm_90")

    def compile_one(item):
        name, (src, arch) = item
        return subprocess.run([nvcc, "-cubin", f"-arch={arch}", f"-I{PROGRAMS}", "-o", str(d / f"{name}.cubin"),
                               str(src)], capture_output=True, text=True, timeout=300)

    with ThreadPoolExecutor(max(2, os.cpu_count() or 2)) as ex:
        for (name, _), r in zip(jobs.items(), ex.map(compile_one, jobs.items())):
            assert r.returncode == 0, f"{name}: {r.stderr}"
    return {name: d / f"{name}.cubin" for name in jobs}


def available(request):
    """{key: path} of the cubins the compilers here could make (NVRTC's first)."""
    out = {}
    for fx in ("nvrtc_cubins", "nvcc_cubins"):
        try:
            out.update(request.getfixturevalue(fx))
        except pytest.skip.Exception:
            pass
    return out


def some_cubins(request):
    """A few good cubins to mutate: NVRTC's if it is there, else nvcc's, else none."""
    got = available(request)
    for keys in ([("sm_90", False), ("sm_80", True)], ["multi_module_ops.sm_90", "bounds_ptx.sm_90"]):
        if all(k in got for k in keys):
            return [got[k] for k in keys]
    return []


# ---- tests ----

def test_builds_warning_free_and_exports_nothing(tmp_path):
    """Built as the client is (native/Makefile's flags) with -Werror; the parser's symbols
    stay hidden in a shared object, as the client library exports only CUDA's."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        pytest.skip("no C compiler")
    so = tmp_path / "libci.so"
    r = subprocess.run([cc, *BUILD_FLAGS, "-O2", "-Werror", "-shared", "-o", str(so), str(CLIENT / "cubin_info.c")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    nm = shutil.which("nm")
    if nm:
        dyn = subprocess.run([nm, "-D", "--defined-only", str(so)], capture_output=True, text=True).stdout
        assert "gw_cubin" not in dyn, dyn


def test_layouts_match_kparams_for_nvcc_cubins(dumper, nvcc_cubins, tmp_path):
    """Every kernel of the test programs, as tests/standin/kparams.py reads the same cubins."""
    paths = [p for n, p in nvcc_cubins.items() if not n.startswith("bounds_ptx")]
    got = parse_output(run_dumper(dumper, paths, tmp_path))
    for path, res in zip(paths, got):
        assert res.rc == 0 and res.ok, path
        want = subprocess.run([sys.executable, str(KPARAMS), str(path)], capture_output=True, text=True,
                              check=True).stdout.split("\n")
        mine = [f"{n} {len(k[0])} {' '.join(f'{o}:{s}' for o, s in k[0])}".rstrip() for n, k in res.kernels.items()]
        assert sorted(mine) == sorted(x for x in want if x), path
        assert res.sm == (80 if path.name.endswith(".sm_80.cubin") else 90)
        for name, (pairs, shared, regs, maxt) in res.kernels.items():
            assert 0 < regs <= 255 and maxt == 0, (path, name)
            assert res.param_bytes[name] >= (pairs[-1][0] + pairs[-1][1] if pairs else 0)
    # the test programs do have kernels: an empty comparison would prove nothing
    assert sum(len(r.kernels) for r in got) >= 15


def test_maxntid_and_hidden_entries_from_ptx(dumper, nvcc_cubins, tmp_path):
    """.maxntid x,y,z gives their product (what the driver reports as MAX_THREADS_PER_BLOCK);
    .reqntid is not maxntid; a non-.visible .entry is still an entry."""
    (res,) = parse_output(run_dumper(dumper, [nvcc_cubins["bounds_ptx.sm_90"]], tmp_path))
    assert res.rc == 0 and res.ok
    assert {n: (k[0], k[3]) for n, k in res.kernels.items()} == {
        "mt3": ([(0, 8)], 256),
        "mt2": ([(0, 8), (8, 4)], 128),
        "rq3": ([(0, 8)], 0),
        "hidden_entry": ([(0, 48), (48, 1)], 0),
    }


@pytest.mark.parametrize("arch", ["sm_80", "sm_90", "sm_90a"])
@pytest.mark.parametrize("rdc", [False, True], ids=["whole", "rdc"])
def test_nvrtc_kernels_known_layouts(dumper, nvrtc_cubins, tmp_path, arch, rdc):
    """NVRTC output (what cuDNN's runtime-compiled kernels are): offsets and sizes by
    ordinal, zero-parameter kernels listed, device functions not (with -rdc they get
    sections of their own), static shared without the sm_90 reserved window, launch bounds.
    sm_90a reads as 90: CUDA 13 writes the same e_flags for both."""
    (res,) = parse_output(run_dumper(dumper, [nvrtc_cubins[(arch, rdc)]], tmp_path))
    assert res.rc == 0 and res.ok
    assert res.sm == int(arch[3:5])
    assert set(res.kernels) == set(NVRTC_EXPECTED)
    for name, (pairs, param_bytes, shared, maxt) in NVRTC_EXPECTED.items():
        got_pairs, got_shared, regs, got_maxt = res.kernels[name]
        assert (got_pairs, res.param_bytes[name], got_shared, got_maxt) == (pairs, param_bytes, shared, maxt), name
        assert 0 < regs <= 255, name


def test_size_zero_and_trailing_bytes_give_the_same(request, dumper, tmp_path):
    """size 0 means the ELF's own extent; bytes after the image (as inside a fatbin) change nothing."""
    cubins = available(request)
    if not cubins:
        pytest.skip("no cubins (neither NVRTC nor nvcc)")
    images = []
    for p in cubins.values():
        data = p.read_bytes()
        images += [(data, 0), (data, 1), (data + bytes(range(256)) * 3, 0)]
    res = batch(dumper, tmp_path, images)
    for i in range(0, len(res), 3):
        assert res[i].rc == 0 and res[i].ok
        assert res[i].key() == res[i + 1].key() == res[i + 2].key(), images[i]


def test_not_cubins(dumper, tmp_path):
    ptx = PTX_SRC.encode() + b"\0"
    fatbin = struct.pack("<IHHQ", 0xBA55ED50, 1, 16, 4096) + bytes(4096)
    wrapper = struct.pack("<IIQQ", 0x466243B1, 1, 0x1000, 0) + bytes(64)
    elf32 = b"\x7fELF\x01\x01\x01\x41" + bytes(56)
    host = bytearray(b"\x7fELF\x02\x01\x01\x00" + bytes(56))
    struct.pack_into("<HH", host, 0x10, 2, 62)  # an x86-64 executable's header
    # empty: size 0 asks for the extent, so a 1-byte zeroed buffer, a zeroed header, and NULL;
    # short texts with size 0 are read no further than their first byte
    images = [(ptx, 0), (ptx, 1), (b"", 0), (bytes(64), 1), (b"", 2), (b"\x7f", 0), (b"\x7fELF", 0),
              (b".version 8.0\0", 1), (b"\0", 1),
              (fatbin, 0), (fatbin, 1), (wrapper, 0), (wrapper, 1), (elf32, 0), (elf32, 1), (bytes(host), 0),
              (bytes(host), 1)]
    for r in batch(dumper, tmp_path, images):
        assert r.rc == -1 and r.ok and not r.kernels


def test_truncated_and_flipped(request, dumper, tmp_path):
    """Cut at every 97th byte, and a few hundred random byte flips (fixed seed), half of them in
    the parts the parser reads (headers, symbols, strings, .nv.info): -1, or a result that keeps
    every promise; and a cut image never parses differently from the whole one."""
    seeds = some_cubins(request)
    if not seeds:
        pytest.skip("no cubins to mutate (neither NVRTC nor nvcc)")
    rng = random.Random(20240611)
    images, whole_at = [], []
    for p in seeds:
        data = p.read_bytes()
        whole_at.append(len(images))
        images.append((data, 0))
        images += [(data[:n], 0) for n in range(97, len(data), 97)]
        meta = [(0, 64)]
        shoff, shnum = struct.unpack_from("<Q", data, 0x28)[0], struct.unpack_from("<H", data, 0x3C)[0]
        meta.append((shoff, shoff + 64 * shnum))
        meta += [(off, off + size) for name, typ, off, size, _ in elf_sections(data)
                 if typ in (2, 3) or name.startswith(".nv.info")]
        for i in range(300 // len(seeds) + 1):
            b = bytearray(data)
            for _ in range(rng.randint(1, 3)):
                if i % 2:
                    lo, hi = rng.choice(meta)
                    at = rng.randrange(lo, max(hi, lo + 1))
                else:
                    at = rng.randrange(len(b))
                b[at] ^= rng.randrange(1, 256)
            images.append((bytes(b), 0))
    res = batch(dumper, tmp_path, images)
    assert all(r.rc in (0, -1) and r.ok for r in res)
    starts = whole_at + [len(images)]
    for s, e in zip(starts, starts[1:]):
        whole = res[s]
        assert whole.rc == 0
        for i in range(s + 1, e):
            data = images[i][0]
            if len(data) < len(images[s][0]) and images[s][0].startswith(data) and res[i].rc == 0:
                assert res[i].key() == whole.key(), f"truncated at {len(data)} parsed differently"
    assert sum(r.rc == -1 for r in res) > len(res) // 4  # the mutations did reach the parser


def test_inconsistent_tables_are_refused(request, dumper, tmp_path):
    """Targeted corruptions: each must give -1 (never a guessed layout), except dropping a
    kernel's entry flag, which just leaves that kernel out."""
    seeds = some_cubins(request)
    if not seeds:
        pytest.skip("no cubins to corrupt (neither NVRTC nor nvcc)")
    data = seeds[0].read_bytes()
    (good,) = parse_output(run_dumper(dumper, [seeds[0]], tmp_path))
    name = next(n for n, k in good.kernels.items() if len(k[0]) >= 2)
    info = f".nv.info.{name}"
    recs = nvinfo_records(data, info)
    kp = [r for r in recs if r[2] in (0x17, 0x45)]
    cbank = next(r for r in recs if r[2] == 0x19)
    syms = symbols(data)
    bad = []

    def patch(fmt, at, *vals):
        b = bytearray(data)
        struct.pack_into(fmt, b, at, *vals)
        return bytes(b)

    ords = [struct.unpack_from("<H", data, r[3] + 4)[0] for r in kp]
    bad.append(patch("<H", kp[0][3] + 4, ords[1]))              # two parameters with one ordinal
    bad.append(patch("<H", kp[0][3] + 4, len(kp) + 5))          # an ordinal past the count: one is missing
    bad.append(patch("<H", kp[0][0] + 2, 11))                   # KPARAM_INFO of an odd size
    bad.append(patch("<B", kp[0][0], 3))                        # KPARAM_INFO not an SVAL
    bad.append(patch("<H", cbank[3], 1))                        # CBANK_PARAM_SIZE below the last parameter's end
    end = good.param_bytes[name]
    bad.append(patch("<H", cbank[3], end + 8))                  # ... or past it: a parameter record is missing
    b = bytearray(data)                                         # no parameter records, yet a parameter space
    for r in kp:
        b[r[0] + 1] = 0x7E
    bad.append(bytes(b))
    bad.append(patch("<B", recs[-1][0], 9))                     # an unknown record format
    bad.append(patch("<H", kp[0][3] + 6, 0))                    # the last parameter moved onto the first
    b = bytearray(data)                                         # no .nv.info.<kernel>: layout unknown
    shstr = section(data, ".shstrtab")
    at = data.index(info.encode() + b"\0", shstr[2])
    b[at + len(".nv.info.")] ^= 0x20
    bad.append(bytes(b))
    bad.append(patch("<H", 0x12, 62))                           # e_machine: not EM_CUDA
    bad.append(patch("<B", 8, 9))                               # an EI_ABIVERSION not known
    bad.append(patch("<B", 5, 2))                               # big-endian
    bad.append(patch("<H", syms[name] + 6, 1))                  # entry symbol not in its .text.<name>
    bad.append(patch("<H", 0x3A, 40))                           # odd e_shentsize
    bad.append(patch("<H", 0x3E, 0xFFFF))                       # e_shstrndx out of range
    res = batch(dumper, tmp_path, [(x, 0) for x in bad])
    for i, r in enumerate(res):
        assert r.rc == -1 and r.ok, f"corruption {i} was accepted"
    # not an entry any more: listed no more, the rest unchanged
    b = bytearray(data)
    b[syms[name] + 5] &= ~0x10
    (r,) = batch(dumper, tmp_path, [(bytes(b), 0)])
    assert r.rc == 0 and r.ok and set(r.kernels) == set(good.kernels) - {name}
    assert all(r.kernels[n] == good.kernels[n] for n in r.kernels)
