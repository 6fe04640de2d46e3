"""Writes the seed corpus of native/fuzz/fuzz_worker: valid frame sequences, as
gpuwire's client sends them after the handshake, that reach deep into the
worker (contexts, memory and copies, staging and module loads, launches,
streams and events, NVML). Op ids come from native/generated/*_ops.h.

A u64 0xD5D5_kkkk_oooooooo in a payload stands for "the first output of this
input's reply number k, plus o" (fuzz_worker.c substitutes it), so a seed can
use a device address or a handle id the worker returned earlier.

usage: python3 make_seeds.py OUTDIR"""

import re
import struct
import sys
from pathlib import Path

GEN = Path(__file__).resolve().parent.parent / "generated"
CLIENT_ID = 1 << 62          # GW_CLIENT_ID_BIT: ids the client names itself
NOREPLY, COLLECT = 1, 2
OP_BYE, OP_FUNC_LAYOUT, OP_STAGE, OP_DEVICE_ATTRS = 5, 6, 7, 16
OP_DELIVER = 21
NULL = 0xFFFFFFFF


def load_ops() -> dict[str, int]:
    ops = {}
    for header in ("gw_ops.h", "nvml_ops.h"):
        for m in re.finditer(r"#define GW_(?:NVML_)?OP_(\w+) (\d+)", (GEN / header).read_text()):
            ops[m.group(1)] = int(m.group(2))
    return ops


OPS = load_ops()


def ph(k: int, off: int = 0) -> int:
    """Placeholder: the first output of reply k, plus off."""
    return (0xD5D5 << 48) | (k << 32) | off


def u32(*v):
    return struct.pack(f"<{len(v)}I", *v)


def u64(*v):
    return struct.pack(f"<{len(v)}Q", *v)


def string(s: str) -> bytes:
    b = s.encode()
    return u32(len(b)) + b


class Session:
    """Frames of one client thread; counts the replies so seeds can name them."""

    def __init__(self, tid: int = 1):
        self.tid, self.seq, self.replies, self.out = tid, 0, 0, bytearray()

    def frame(self, op, payload=b"", flags=0) -> int | None:
        """Appends a frame; returns its reply number (None if posted)."""
        self.seq += 1
        opnum = OPS[op] if isinstance(op, str) else op
        self.out += struct.pack("<IHHII", len(payload), opnum, flags, self.tid, self.seq) + payload
        if flags & NOREPLY or opnum == OP_BYE:
            return None
        self.replies += 1
        return self.replies - 1

    def context(self) -> None:
        self.frame("cuInit", u64(0))
        k = self.frame("cuDevicePrimaryCtxRetain", u32(1) + u64(0))
        self.frame("cuCtxSetCurrent", u64(ph(k)))

    def alloc(self, n: int) -> int:
        return self.frame("cuMemAlloc_v2", u32(1) + u64(n))

    def stage(self, blob: bytes) -> None:
        self.frame(OP_STAGE, u64(0, len(blob)) + blob, NOREPLY)

    def bye(self) -> bytes:
        self.frame(OP_BYE)
        return bytes(self.out)


IMAGE = b"\x7fELF gpuwire fuzz seed: the stand-in accepts any image\0" + bytes(8)


def launch_payload(fid, grid, block, params: bytes, stream=0, attrs=b"", nattrs=0, shmem=0) -> bytes:
    return u64(fid) + u32(*grid, *block, shmem) + u64(stream) + u32(nattrs) + attrs + u32(len(params)) + params


def seed_device() -> bytes:
    s = Session()
    s.frame("cuInit", u64(0))
    s.frame("cuDeviceGetCount", u32(1))
    s.frame("cuDeviceGet", u32(1) + u64(0))
    s.frame("cuDeviceGetAttribute", u32(1) + u64(1, 0))
    s.frame("cuDeviceGetName", u32(64) + u64(64, 0))
    s.frame("cuDeviceTotalMem_v2", u32(1) + u64(0))
    s.frame(OP_DEVICE_ATTRS, u32(0))
    s.frame("cuGetErrorString", u64(700))
    return s.bye()


def seed_memory() -> bytes:
    s = Session()
    s.context()
    a = s.alloc(4096)
    s.frame("cuMemcpyHtoD_v2", u64(ph(a), 0) + bytes(range(256)), NOREPLY)
    s.frame("cuMemsetD8_v2", u64(ph(a, 256), 0x5A, 256), NOREPLY)
    s.frame("cuMemsetD32_v2", u64(ph(a, 512), 0x01020304, 64), NOREPLY)
    s.frame("cuMemcpyDtoH_v2", u64(ph(a), 1024, 0), COLLECT)
    b = s.alloc(4096)
    s.frame("cuMemcpyDtoD_v2", u64(ph(b), ph(a), 1024))
    s.frame("cuMemGetInfo_v2", u32(1, 1))
    s.frame("cuMemGetAddressRange_v2", u32(1, 1) + u64(ph(a, 100)))
    s.frame("cuPointerGetAttribute", u64(ph(b)) + u32(1, 1, 9))
    s.frame("cuPointerGetAttributes", u64(ph(b)) + u32(0, 3, 1, 2, 9))
    # a 2D band: host rows in, then device rows out
    s.frame("cuMemcpy2D_v2", u64(0) + u32(1) + u64(0, 0) + u32(2) + u64(ph(a), 64) + u64(16, 4) + bytes(64))
    s.frame("cuMemcpy2D_v2", u64(0) + u32(2) + u64(ph(a), 64) + u32(1) + u64(0, 0) + u64(16, 4), COLLECT)
    s.frame("cuMemFree_v2", u64(ph(b)), COLLECT)
    s.frame("cuMemFree_v2", u64(ph(a)), COLLECT)
    return s.bye()


def seed_landings() -> bytes:
    """Device-to-host copies that land later: posted, then a synchronize brings the bytes."""
    s = Session()
    s.context()
    a = s.alloc(8192)
    s.frame("cuMemsetD32_v2", u64(ph(a), 0x0BADF00D, 2048), NOREPLY)
    s.frame(OP_DELIVER, u64(1, ph(a), 4096, 0) + u32(0), NOREPLY)
    s.frame(OP_DELIVER, u64(2, ph(a, 4096), 4096, 0) + u32(1), NOREPLY)
    s.frame("cuCtxSynchronize", b"", COLLECT)
    s.frame("cuMemFree_v2", u64(ph(a)), COLLECT)
    return s.bye()


def seed_module_launch() -> bytes:
    s = Session()
    s.context()
    a, b, c = s.alloc(1024), s.alloc(1024), s.alloc(1024)
    s.frame("cuMemcpyHtoD_v2", u64(ph(a), 0) + struct.pack("<256f", *range(256)), NOREPLY)
    s.frame("cuMemcpyHtoD_v2", u64(ph(b), 0) + struct.pack("<256f", *range(256)), NOREPLY)
    s.stage(IMAGE)
    mod, fn = CLIENT_ID | 0x1000, CLIENT_ID | 0x1008
    s.frame("cuModuleLoadData", u64(mod, len(IMAGE)) + u32(0) + u32(0), COLLECT)
    s.frame("cuModuleGetFunction", u64(fn, mod) + string("_Z10vector_addPKfS0_Pfi"))
    s.frame(OP_FUNC_LAYOUT, u64(fn))
    s.frame("cuFuncGetAttribute", u32(1) + u64(0) + u64(fn))
    params = u64(ph(a), ph(b), ph(c)) + u32(256) + bytes(4)
    s.frame("cuLaunchKernel", launch_payload(fn, (1, 1, 1), (256, 1, 1), params), NOREPLY)
    s.frame("cuLaunchKernelEx", launch_payload(fn, (2, 1, 1), (128, 1, 1), params), NOREPLY)
    s.frame("cuCtxSynchronize", b"", COLLECT)
    s.frame("cuMemcpyDtoH_v2", u64(ph(c), 1024, 0), COLLECT)
    s.frame("cuModuleUnload", u64(mod), COLLECT)
    return s.bye()


def seed_library_streams() -> bytes:
    s = Session()
    s.context()
    a = s.alloc(4096)
    stream, ev0, ev1 = CLIENT_ID | 0x2000, CLIENT_ID | 0x2008, CLIENT_ID | 0x2010
    s.frame("cuStreamCreate", u64(stream, 0), NOREPLY)
    s.frame("cuEventCreate", u64(ev0, 0), NOREPLY)
    s.frame("cuEventCreate", u64(ev1, 0), NOREPLY)
    s.frame("cuEventRecord", u64(ev0, stream), NOREPLY)
    s.stage(IMAGE)
    lib, kern = CLIENT_ID | 0x3000, CLIENT_ID | 0x3008
    s.frame("cuLibraryLoadData", u64(lib, len(IMAGE)) + u32(0) + u32(0), COLLECT)
    s.frame("cuLibraryGetKernel", u64(kern, lib) + string("da_scale"))
    s.frame(OP_FUNC_LAYOUT, u64(kern))
    params = u64(ph(a)) + struct.pack("<f", 2.0) + u32(1024)
    s.frame("cuLaunchKernel", launch_payload(kern, (4, 1, 1), (256, 1, 1), params, stream=stream), NOREPLY)
    s.frame("cuMemcpyHtoDAsync_v2", u64(ph(a), stream) + bytes(512), NOREPLY)
    s.frame("cuEventRecord", u64(ev1, stream), NOREPLY)
    s.frame("cuStreamWaitEvent", u64(0, ev1, 0), NOREPLY)
    s.frame("cuEventSynchronize", u64(ev1), COLLECT)
    s.frame("cuEventElapsedTime_v2", u32(1) + u64(ev0, ev1))
    s.frame("cuMemcpyDtoHAsync_v2", u64(ph(a), 512, stream), COLLECT)
    s.frame("cuStreamSynchronize", u64(stream), COLLECT)
    s.frame("cuStreamDestroy_v2", u64(stream), NOREPLY)
    s.frame("cuLibraryUnload", u64(lib), COLLECT)
    return s.bye()


def seed_threads() -> bytes:
    """Two client threads: the second runs on a worker thread of its own."""
    one, two = Session(1), Session(2)
    one.context()
    two.seq = 100
    two.frame("cuInit", u64(0))
    # u64 id the client names, u32 flags, u64 device, u32 params given, u32 affinity array given, i32 count
    two.frame("cuCtxCreate_v4", u64(CLIENT_ID | 0x7000) + u32(0) + u64(0) + u32(1, 1, 1)
              + u32(0, 4))  # one CUexecAffinityParam: CU_EXEC_AFFINITY_TYPE_SM_COUNT, 4 SMs
    two.frame("cuCtxGetDevice", u32(1))
    two.frame("cuCtxGetLimit", u32(1) + u64(2))
    two.frame("cuMemAlloc_v2", u32(1) + u64(64), NOREPLY)  # a posted failure surfaces at the COLLECT
    two.frame("cuCtxSynchronize", b"", COLLECT)
    one.frame(OP_BYE)
    return bytes(one.out[:-16]) + bytes(two.out) + bytes(one.out[-16:])


def seed_nvml() -> bytes:
    s = Session()
    s.frame("nvmlInit_v2")
    s.frame("nvmlDeviceGetCount_v2", u32(1))
    k = s.frame("nvmlDeviceGetHandleByIndex_v2", u64(0) + u32(1))
    s.frame("nvmlDeviceGetMemoryInfo", u64(ph(k)) + u32(1))
    s.frame("nvmlDeviceGetName", u64(ph(k)) + u32(96) + u64(96))
    return s.bye()


def seed_malformed() -> bytes:
    s = Session()
    s.frame("cuInit", u64(0))
    s.frame("cuModuleGetFunction", u64(CLIENT_ID | 8, 0) + u32(3) + b"a\0b")  # NUL inside a string
    return bytes(s.out)


def regress_graph_get_nodes_empty_count() -> bytes:
    """cuGraphGetNodes with numNodes sent as an empty (not NULL) in/out array:
    the generated count check read *numNodes from a 0-byte buffer (heap over-read,
    found by this fuzzer; fixed in codegen/gen.py)."""
    s = Session()
    s.frame("cuInit", u64(0))
    s.frame("cuGraphGetNodes", u64(0) + u32(1) + u32(0))
    return s.bye()


def regress_layout_after_unload() -> bytes:
    """A launch, an unload of another module, the same launch again: the
    function's cached parameter layout was replaced and the old one leaked
    (found by this fuzzer through LeakSanitizer; fixed in worker/launch.c)."""
    s = Session()
    s.context()
    a = s.alloc(1024)
    mod_a, mod_b, fn = CLIENT_ID | 0x4000, CLIENT_ID | 0x4008, CLIENT_ID | 0x4010
    for mod in (mod_a, mod_b):
        s.stage(IMAGE)
        s.frame("cuModuleLoadData", u64(mod, len(IMAGE)) + u32(0) + u32(0), COLLECT)
    s.frame("cuModuleGetFunction", u64(fn, mod_a) + string("_Z8ep_touchPii"))
    launch = launch_payload(fn, (1, 1, 1), (32, 1, 1), u64(ph(a)) + u32(32) + bytes(4))
    s.frame("cuLaunchKernel", launch, NOREPLY)
    s.frame("cuModuleUnload", u64(mod_b), COLLECT)
    s.frame("cuLaunchKernel", launch, NOREPLY)
    s.frame("cuCtxSynchronize", b"", COLLECT)
    return s.bye()


def sleep_then_synchronize(ids: int, ms: int, sync_flags: int) -> Session:
    """A context, the stand-in's gw_sleep(ms) launched and a synchronize
    (module and function named ids and ids + 8)."""
    s = Session()
    s.context()
    mod, fn = ids, ids + 8
    s.stage(IMAGE)
    s.frame("cuModuleLoadData", u64(mod, len(IMAGE)) + u32(0) + u32(0), COLLECT)
    s.frame("cuModuleGetFunction", u64(fn, mod) + string("_Z8gw_sleepi"))
    s.frame("cuLaunchKernel", launch_payload(fn, (1, 1, 1), (1, 1, 1), u32(ms) + bytes(4)), NOREPLY)
    s.frame("cuCtxSynchronize", b"", sync_flags)
    return s


def regress_long_sleep() -> bytes:
    """The stand-in's gw_sleep(ms) books ms for the next synchronize to wait out,
    as a long kernel would: a fuzzed ms of days would stall the harness, which
    caps it (GPUWIRE_STANDIN_SLEEP_CAP_MS). A sleep of a day and a synchronize."""
    return sleep_then_synchronize(CLIENT_ID | 0x5000, 86_400_000, COLLECT).bye()


def regress_a_thread_left_in_the_driver() -> bytes:
    """An input that ends (no goodbye) while its synchronize still waits out a
    gw_sleep: the session's end leaves that thread inside the driver. The
    harness serves the next input in the same process, and the thread table
    the ended session left behind made the next input's calls wait forever
    (found by this fuzzer as timeouts; fixed by gw_worker_join_left_threads).
    Its sleep reaches the synchronize only with GPUWIRE_STANDIN_SLEEP_CAP_MS
    over the worker's half-second join wait, as tests/unit/test_fuzz.py sets it."""
    s = sleep_then_synchronize(CLIENT_ID | 0x6000, 60_000, NOREPLY)
    # a second client thread's call, answered while the first one's synchronize
    # sleeps (a synchronize only waits, so later jobs may start): the harness
    # waits for it, so the connection ends with the synchronize under way
    two = Session(2)
    two.frame("cuDeviceGetCount", u32(1))
    return bytes(s.out) + bytes(two.out) + b"\0" * 5  # a cut header: the connection ends here


SEEDS = {
    "device": seed_device, "memory": seed_memory, "module_launch": seed_module_launch,
    "library_streams": seed_library_streams, "threads": seed_threads, "nvml": seed_nvml,
    "malformed": seed_malformed, "landings": seed_landings,
}
REGRESSIONS = {"graph_get_nodes_empty_count": regress_graph_get_nodes_empty_count,
               "layout_after_unload": regress_layout_after_unload, "long_sleep": regress_long_sleep,
               "a_thread_left_in_the_driver": regress_a_thread_left_in_the_driver}


def main() -> None:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for name, make in SEEDS.items():
        (out / f"seed_{name}").write_bytes(make())
    for name, make in REGRESSIONS.items():
        (out / f"regress_{name}").write_bytes(make())


if __name__ == "__main__":
    main()
