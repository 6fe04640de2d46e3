"""The driver's tools module table, 6e163fbe, that cuFFT 13 asks for
(native/client/private/tools_module_table.c, docs/export-tables.md): slot 7
lists a module's functions through a callback and returns how many, as the
public cuModuleGetFunctionCount / cuModuleEnumerateFunctions do; the other
slots answer CUDA_ERROR_NOT_SUPPORTED and name themselves. Then cuFFT itself
(tests/programs/cufft_plan.c) where libcufft is found: GPUWIRE_TEST_CUFFT,
the nvidia-cufft wheel's libcufft.so.12 (or CUDA 12's .so.11), else the
toolkit's: its plan is made through gpuwire against the stand-in, which
lists the kernel and globals of each module cuFFT loads but cannot run
them."""

import glob
import os
import site
import sys

import pytest

from conftest import ROOT, explain, gw_run, start_server
from test_mapped_memory import PRELUDE

SCRIPT = PRELUDE + r"""
mod = ctypes.c_void_p()
# any image loads on the stand-in; one it cannot read holds all its kernels
assert cuda.cuModuleLoadData(ctypes.byref(mod), b".version 8.0\n.target sm_90\n.address_size 64\n\0") == 0

uuid = (ctypes.c_ubyte * 16)(*bytes.fromhex("6e163fbeb958444d835ce182aff1991e"))
t = ctypes.c_void_p()
assert cuda.cuGetExportTable(ctypes.byref(t), ctypes.byref(uuid)) == 0
words = (ctypes.c_void_p * 64).from_address(t.value)
print("size", words[0])

CB = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
seen = []
def record(user, fn, owner):
    seen.append((user, fn, owner))
cb = CB(record)
slot7 = ctypes.CFUNCTYPE(ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p, CB, ctypes.c_void_p)(words[7])

count = ctypes.c_uint()
assert cuda.cuModuleGetFunctionCount(ctypes.byref(count), mod) == 0
fns = (ctypes.c_void_p * count.value)()
assert cuda.cuModuleEnumerateFunctions(fns, count.value, mod) == 0
n = slot7(ctx, mod, cb, 0x1234)
print("slot7", n == count.value, count.value > 1, [f for _, f, _ in seen] == list(fns),
      all(u == 0x1234 and o == mod.value for u, _, o in seen))
seen.clear()
print("current", slot7(None, mod, cb, 0x1234) == count.value, len(seen) == count.value)
seen.clear()
print("bad", slot7(ctx, None, cb, 0), slot7(ctx, mod, CB(), 0), slot7(ctx, 0x4321, cb, 0), len(seen))
other = ctypes.CFUNCTYPE(ctypes.c_int)(words[33])
print("slot33", other())
"""


def test_slot7_lists_a_modules_functions(server):
    r = gw_run([sys.executable, "-c", SCRIPT], server=server.address, timeout=60)
    assert r.returncode == 0, explain(r, server)
    lines = r.stdout.split("\n")
    assert "size 512" in lines, explain(r, server)  # 64 words; cuFFT needs more than 0x37
    assert "slot7 True True True True" in lines, explain(r, server)
    assert "current True True" in lines, explain(r, server)
    assert "bad 0 0 0 0" in lines, explain(r, server)  # NULL module, NULL callback, unknown module
    assert "slot33 801" in lines, explain(r, server)  # CUDA_ERROR_NOT_SUPPORTED
    assert "TOOLS_MODULE slot 33 is not implemented" in r.stderr, explain(r, server)


LAZY_SCRIPT = PRELUDE + r"""
ptx = b".version 8.0\n.target sm_90\n.address_size 64\n\0"
uuid = (ctypes.c_ubyte * 16)(*bytes.fromhex("6e163fbeb958444d835ce182aff1991e"))
t = ctypes.c_void_p()
assert cuda.cuGetExportTable(ctypes.byref(t), ctypes.byref(uuid)) == 0
words = (ctypes.c_void_p * 64).from_address(t.value)
CB = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
slot7 = ctypes.CFUNCTYPE(ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p, CB, ctypes.c_void_p)(words[7])

def attrs(fn):  # thread limit (needs a loaded function), registers (does not), loading state
    v, regs, state = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
    return (cuda.cuFuncGetAttribute(ctypes.byref(v), 0, ctypes.c_void_p(fn)),
            cuda.cuFuncGetAttribute(ctypes.byref(regs), 4, ctypes.c_void_p(fn)),
            cuda.cuFuncIsLoaded(ctypes.byref(state), ctypes.c_void_p(fn)), state.value)

listed, given = ctypes.c_void_p(), ctypes.c_void_p()
assert cuda.cuModuleLoadData(ctypes.byref(listed), ptx) == 0
assert cuda.cuModuleLoadData(ctypes.byref(given), ptx) == 0
fns = (ctypes.c_void_p * 1)()
assert cuda.cuModuleEnumerateFunctions(fns, 1, listed) == 0
print("listed", *attrs(fns[0]))
seen = []
cb = CB(lambda user, fn, owner: seen.append(fn))
print("slot7", slot7(ctx, given, cb, 0) == len(seen) > 0, *attrs(seen[0]))
"""


def test_slot7_gives_loaded_functions(tmp_path):
    """Under lazy loading a function listed by cuModuleEnumerateFunctions is
    not loaded, and its thread limit is refused with FUNCTION_NOT_LOADED
    (cuda.h); the driver's slot 7 gives cuFFT functions whose limits it can
    ask (through gpuwire on the H100 cuFFT's questions got 913). The
    stand-in plays the lazy driver."""
    srv = start_server(tmp_path / "server.log", env={"GPUWIRE_STANDIN_LAZY": "1"})
    try:
        r = gw_run([sys.executable, "-c", LAZY_SCRIPT], server=srv.address, timeout=60)
    finally:
        srv.stop()
    assert r.returncode == 0, explain(r, srv)
    lines = r.stdout.split("\n")
    assert "listed 913 0 0 0" in lines, explain(r, srv)  # the public call: not loaded (state 0)
    assert "slot7 True 0 0 0 1" in lines, explain(r, srv)  # slot 7's function: loaded (state 1)


def lz4_block(data: bytes) -> bytes:
    """A small LZ4 block encoder (greedy, 4-byte matches), enough to make the
    compressed fat binary entries cuFFT ships."""
    out, table, i, anchor, n = bytearray(), {}, 0, 0, len(data)

    def length(v: int) -> None:
        while v >= 255:
            out.append(255)
            v -= 255
        out.append(v)

    def sequence(lit: bytes, off: int = 0, mlen: int = 0) -> None:
        out.append((min(len(lit), 15) << 4) | (min(mlen - 4, 15) if off else 0))
        if len(lit) >= 15:
            length(len(lit) - 15)
        out.extend(lit)
        if off:
            out.extend(off.to_bytes(2, "little"))
            if mlen - 4 >= 15:
                length(mlen - 4 - 15)

    while i < n - 12:
        j = table.get(data[i:i + 4])
        table[data[i:i + 4]] = i
        if j is not None and i - j < 65536:
            m = 4
            while i + m < n - 5 and data[j + m] == data[i + m]:
                m += 1
            sequence(data[anchor:i], i - j, m)
            i += m
            anchor = i
        else:
            i += 1
    sequence(data[anchor:])
    return bytes(out)


def fatbin(entries: list[tuple[bytes, bool]]) -> bytes:
    """A fat binary of PTX entries, each (text, LZ4-compressed or not)."""
    body = b""
    for text, packed in entries:
        payload = lz4_block(text) if packed else text
        padded = payload + b"\0" * (-len(payload) % 8)
        head = bytearray(0x48)
        head[0:8] = (1).to_bytes(2, "little") + (0x101).to_bytes(2, "little") + (0x48).to_bytes(4, "little")
        head[8:16] = len(padded).to_bytes(8, "little")
        head[0x10:0x14] = len(payload).to_bytes(4, "little")
        head[0x1c:0x20] = (90).to_bytes(4, "little")
        head[0x28:0x2c] = ((0x2000 if packed else 0) | 0x11).to_bytes(4, "little")
        head[0x38:0x40] = (len(text) if packed else 0).to_bytes(8, "little")
        body += bytes(head) + padded
    return (0xBA55ED50).to_bytes(4, "little") + (1).to_bytes(2, "little") + (16).to_bytes(2, "little") \
        + len(body).to_bytes(8, "little") + body


PTX_A = (b"//\n.version 8.8\n.target sm_90\n.address_size 64\n"
         b".visible .global .align 8 .u64 lut_sp;\n.global .align 4 .b8 table_a[24];\n"
         b".visible .entry plain_kernel(\n.param .u64 p0\n)\n{\nret;\n}\n\0")
PTX_B = (b"//\n.version 8.8\n.target sm_90\n.address_size 64\n.extern .shared .align 16 .b8 smem[];\n"
         + b"// padding that repeats, so the block has matches: " + b"abcdefgh" * 40 + b"\n"
         + b".visible .entry packed_kernel(\n.param .u64 p0\n)\n{\nret;\n}\n\0")

FOREIGN = PRELUDE + r"""
import sys
mod = ctypes.c_void_p()
image = open(sys.argv[1], "rb").read()
assert cuda.cuModuleLoadData(ctypes.byref(mod), image) == 0
n = ctypes.c_uint()
assert cuda.cuModuleGetFunctionCount(ctypes.byref(n), mod) == 0
fns = (ctypes.c_void_p * n.value)()
assert cuda.cuModuleEnumerateFunctions(fns, n.value, mod) == 0
print("functions", n.value, all(fns))
f = ctypes.c_void_p()
print("by name", cuda.cuModuleGetFunction(ctypes.byref(f), mod, b"packed_kernel"),
      cuda.cuModuleGetFunction(ctypes.byref(ctypes.c_void_p()), mod, b"plain_kernel"),
      cuda.cuModuleGetFunction(ctypes.byref(ctypes.c_void_p()), mod, b"_Z12empty_kernelv"))
cuda.cuCtxSynchronize()  # function lookups are posted: a miss surfaces here
for g in (b"lut_sp", b"table_a", b"smem"):
    p, size, p2 = ctypes.c_uint64(), ctypes.c_size_t(), ctypes.c_uint64()
    rc = cuda.cuModuleGetGlobal_v2(ctypes.byref(p), ctypes.byref(size), mod, g)
    rc2 = cuda.cuModuleGetGlobal_v2(ctypes.byref(p2), None, mod, g)
    word = ctypes.c_uint64(7)
    read = cuda.cuMemcpyDtoH_v2(ctypes.byref(word), p, 8) if rc == 0 else -1
    print("global", g.decode(), rc, size.value, p.value == p2.value and p.value != 0, read, word.value)
arg = ctypes.c_uint64(0)
params = (ctypes.c_void_p * 1)(ctypes.cast(ctypes.byref(arg), ctypes.c_void_p))
rc = cuda.cuLaunchKernel(f, 1, 1, 1, 1, 1, 1, 0, None, params, None)
print("launch", rc or cuda.cuCtxSynchronize())
"""


def test_standin_lists_a_libraries_own_kernels(server, tmp_path):
    """The stand-in reads a fat binary of kernels it has no host code for (as
    cuFFT's are): one plain and one LZ4-compressed PTX entry."""
    image = tmp_path / "foreign.fatbin"
    image.write_bytes(fatbin([(PTX_A, False), (PTX_B, True)]))
    r = gw_run([sys.executable, "-c", FOREIGN, str(image)], server=server.address, timeout=60)
    assert r.returncode == 0, explain(r, server)
    lines = r.stdout.split("\n")
    assert "functions 2 True" in lines, explain(r, server)
    assert "by name 0 0 500" in lines, explain(r, server)  # its own kernels; none of the stand-in's
    assert "global lut_sp 0 8 True 0 0" in lines, explain(r, server)  # zeroed device memory
    assert "global table_a 0 24 True 0 0" in lines, explain(r, server)
    assert "global smem 500 0 False -1 7" in lines, explain(r, server)  # shared, not a global
    assert "launch 801" in lines, explain(r, server)  # no host code: it cannot run here


def cufft_library() -> str | None:
    found = [os.environ.get("GPUWIRE_TEST_CUFFT", "")]
    for d in site.getsitepackages() + [site.getusersitepackages()]:
        found += glob.glob(d + "/nvidia/cu13/lib/libcufft.so.12") + glob.glob(d + "/nvidia/cufft/lib/libcufft.so.1[12]")
    found += glob.glob("/usr/local/cuda/lib64/libcufft.so.1[12]")
    return next((f for f in found if f and os.path.exists(f)), None)


def test_cufft_through_the_table(server):
    lib = cufft_library()
    program = ROOT / "build" / "programs-libs" / "cufft_plan"
    if lib is None:
        pytest.skip("no libcufft.so.12 or .so.11 (GPUWIRE_TEST_CUFFT, the nvidia-cufft wheel or the toolkit)")
    if not program.exists():
        pytest.skip("build/programs-libs/cufft_plan is not built (make -C tests/programs)")
    r = gw_run([str(program), lib], server=server.address, env={"GPUWIRE_DEBUG": "2"}, timeout=120)
    assert r.returncode == 0, explain(r, server)
    lines = r.stdout.split("\n")
    assert "cufftCreate 0" in lines, explain(r, server)
    # the plan: cuFFT loads one kernel per module and takes it through slot 7, which must
    # answer 1 (the stand-in lists a cuFFT module's real kernels, tests/standin/foreign.c)
    assert "cufftPlan1d 0" in lines, explain(r, server)
    assert "gpuwire: export table TOOLS_MODULE -> " in r.stderr, explain(r, server)
    answers = [ln for ln in r.stderr.splitlines() if "export TOOLS_MODULE[7] -> " in ln]
    assert answers and all("-> 1 function(s)," in ln for ln in answers), explain(r, server)
    # slot 7 is all cuFFT uses of the table
    assert "TOOLS_MODULE slot" not in r.stderr, explain(r, server)
    # the transform itself is launched, but the stand-in cannot run cuFFT's kernels: the
    # launch's error (CUDA_ERROR_NOT_SUPPORTED) surfaces at the synchronization
    assert "cufftExecC2C 0" in lines and "cuCtxSynchronize 801" in lines, explain(r, server)
    assert "cufftDestroy 0" in lines, explain(r, server)
