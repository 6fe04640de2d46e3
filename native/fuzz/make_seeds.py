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
OP_NVML_TABLE_CALL = 32
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
    s.frame("cuLaunchHostFunc", u64(stream, 7) + u32(0), NOREPLY)  # the harness answers its HOST_CALL
    s.frame("cuStreamAddCallback", u64(stream, 9) + u32(0), NOREPLY)
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


# sizes of cuda.h structs that travel raw (x86-64 and aarch64 layouts alike)
RESOURCE_DESC, TEXTURE_DESC, VIEW_DESC, LAUNCH_ATTR, MEMCPY3D, ALLOC_PARAMS, ACCESS_DESC = 144, 104, 112, 72, 200, 120, 12


def linear_resource(dev, size: int) -> bytes:
    """CUDA_RESOURCE_DESC of linear device memory: resType 2, devPtr, float (0x20), 1 channel, size."""
    d = bytearray(RESOURCE_DESC)
    struct.pack_into("<I", d, 0, 2)
    struct.pack_into("<QIIQ", d, 8, dev, 0x20, 1, size)
    return bytes(d)


def memcpy3d_device(dst, src, width: int) -> bytes:
    """CUDA_MEMCPY3D between device memory: both memory types 2, one row of width bytes."""
    m = bytearray(MEMCPY3D)
    struct.pack_into("<IxxxxQ", m, 32, 2, src)
    struct.pack_into("<IxxxxQ", m, 120, 2, dst)
    struct.pack_into("<QQQ", m, 176, width, 1, 1)
    return bytes(m)


def seed_formats() -> bytes:
    """The hand-written formats of codegen/protocol.txt, one frame each or more:
    texture and surface objects, JIT options and outputs, links, launches with
    attributes, cluster occupancy, capture info, kernel, memcpy and memory
    allocation nodes, conditional nodes, exec update, DOT text, pool attributes."""
    s = Session()
    s.context()
    a, b = s.alloc(4096), s.alloc(4096)
    s.frame("cuTexObjectCreate", linear_resource(ph(a), 4096) + bytes(TEXTURE_DESC) + u32(0))
    s.frame("cuTexObjectCreate", linear_resource(ph(a), 4096) + bytes(TEXTURE_DESC) + u32(1) + bytes(VIEW_DESC))
    s.frame("cuSurfObjectCreate", u32(0) + bytes(4) + u64(CLIENT_ID | 0x9000) + bytes(RESOURCE_DESC - 16))  # an unknown array
    arr = CLIENT_ID | 0x9008
    s.frame("cuArrayCreate_v2", u64(arr) + u32(24) + u64(16, 16) + u32(0x20, 1))  # CUDA_ARRAY_DESCRIPTOR, 24 bytes
    s.frame("cuSurfObjectCreate", u32(0) + bytes(4) + u64(arr) + bytes(RESOURCE_DESC - 16))
    # 2D bands with an array side: device rows into the array, then the array's rows out to the host
    s.frame("cuMemcpy2D_v2", u64(0) + u32(2) + u64(ph(a), 64) + u32(3) + u64(arr, 0, 0, 0, 0) + u64(16, 4))
    s.frame("cuMemcpy2D_v2", u64(0) + u32(3) + u64(arr, 0, 0, 0, 0) + u32(1) + u64(0, 0) + u64(16, 4))
    # a module with JIT options: both logs (16 bytes) and the wall time asked for, one number
    s.stage(IMAGE)
    mod, fn = CLIENT_ID | 0x8000, CLIENT_ID | 0x8008
    jit = u32(4) + u32(4) + u64(16) + u32(6) + u64(16) + u32(2) + u64(0) + u32(0) + u64(32)  # INFO/ERROR sizes, WALL_TIME, MAX_REGISTERS
    s.frame("cuModuleLoadDataEx", u64(mod, len(IMAGE)) + jit + u32(0), COLLECT)
    s.frame("cuModuleGetFunction", u64(fn, mod) + string("_Z10vector_addPKfS0_Pfi"))
    params = u64(ph(a), ph(b), ph(b)) + u32(256) + bytes(4)
    coop = u32(2) + bytes(4) + u32(1) + bytes(LAUNCH_ATTR - 12)  # CU_LAUNCH_ATTRIBUTE_COOPERATIVE, 1
    s.frame("cuLaunchKernelEx", launch_payload(fn, (1, 1, 1), (256, 1, 1), params, attrs=coop, nattrs=1), NOREPLY)
    s.frame("cuOccupancyMaxActiveClusters", launch_payload(fn, (1, 1, 1), (256, 1, 1), b"")[:-4])
    s.frame("cuOccupancyMaxPotentialClusterSize", launch_payload(fn, (1, 1, 1), (128, 1, 1), b"")[:-4])
    s.frame("cuCtxSynchronize", b"", COLLECT)
    s.frame("cuStreamGetCaptureInfo_v2", u64(0) + u32(31))
    s.frame("cuStreamGetCaptureInfo_v3", u64(0) + u32(31))
    # a link: create with a log, add the staged image, complete, fetch nothing more, destroy
    link = s.frame("cuLinkCreate_v2", u32(1) + u32(4) + u64(64))
    s.stage(IMAGE)
    s.frame("cuLinkAddData_v2", u64(ph(link, 0)) + u32(1) + u64(len(IMAGE)) + string("seed.cubin") + u32(0))
    s.frame("cuLinkComplete", u64(ph(link, 0), 0))
    s.frame("cuLinkDestroy", u64(ph(link, 0)))
    # graphs: a kernel node, its parameters read and set, a memcpy node, an allocation node
    g = CLIENT_ID | 0xA000
    s.frame("cuGraphCreate", u64(g, 0), NOREPLY)
    kp = u64(fn, 0, 0) + u32(1, 1, 1, 64, 1, 1, 0) + u32(len(params)) + params
    k = s.frame("cuGraphAddKernelNode_v2", u64(g) + u32(0) + kp)
    s.frame("cuGraphKernelNodeGetParams_v2", u64(ph(k)))
    s.frame("cuGraphKernelNodeSetParams_v2", u64(ph(k)) + kp)
    m = s.frame("cuGraphAddMemcpyNode", u64(g) + u32(1) + u64(ph(k)) + memcpy3d_device(ph(b), ph(a), 256) + u64(0))
    s.frame("cuGraphMemcpyNodeSetParams", u64(ph(m)) + memcpy3d_device(ph(b), ph(a), 128))
    alloc = bytearray(ALLOC_PARAMS)
    struct.pack_into("<I", alloc, 0, 1)        # CU_MEM_ALLOCATION_TYPE_PINNED
    struct.pack_into("<II", alloc, 8, 1, 0)    # location: device 0
    struct.pack_into("<Q", alloc, 104, 65536)  # bytesize
    access = u32(1, 0, 3)                      # device 0, read-write
    n = s.frame("cuGraphAddMemAllocNode", u64(g) + u32(0) + bytes(alloc) + u32(1) + access)
    s.frame("cuGraphMemAllocNodeGetParams", u64(ph(n)))
    s.frame("cuGraphAddNode_v2", u64(g) + u32(0) + u64(0) + u32(0, 1) + u64(0))
    s.frame("cuGraphDebugDotPrint", u64(g) + u32(0))
    e = s.frame("cuGraphInstantiateWithFlags", u32(1) + u64(g, 0))
    s.frame("cuGraphExecUpdate_v2", u64(ph(e), g) + u32(1))
    s.frame("cuGraphExecUpdate_v2", u64(ph(e), g) + u32(0))
    s.frame("cuGraphExecKernelNodeSetParams_v2", u64(ph(e), ph(k)) + kp)
    s.frame("cuGraphExecMemcpyNodeSetParams", u64(ph(e), ph(m)) + memcpy3d_device(ph(b), ph(a), 64) + u64(0))
    pool = s.frame("cuDeviceGetDefaultMemPool", u32(1) + u64(0))
    s.frame("cuMemPoolSetAttribute", u64(ph(pool)) + u32(4) + u64(1 << 20))  # CU_MEMPOOL_ATTR_RELEASE_THRESHOLD
    s.frame("cuMemPoolGetAttribute", u64(ph(pool)) + u32(4))
    s.frame("cuMemPoolGetAttribute", u64(ph(pool)) + u32(1))
    s.frame("cuMemPoolGetAttribute", u64(ph(pool)) + u32(99))
    s.frame("cuCtxCreate_v2", u64(CLIENT_ID | 0xB000) + u32(0) + u64(0) + u32(0, 0, 0))
    s.frame("cuModuleUnload", u64(mod), COLLECT)
    return s.bye()


def bad_format_frames() -> dict[str, tuple[str, bytes]]:
    """One malformed request per bound the worker checks in a hand-written
    format (tools/worker-wire-diff.py plays each after a context): name ->
    (op, payload)."""
    launch = launch_payload(CLIENT_ID | 8, (1, 1, 1), (1, 1, 1), b"")
    kp = u64(CLIENT_ID | 8, 0, 0) + u32(1, 1, 1, 1, 1, 1, 0)
    return {
        "launch attrs 33": ("cuLaunchKernelEx", launch_payload(CLIENT_ID | 8, (1, 1, 1), (1, 1, 1), b"", nattrs=33)),
        "launch attrs cut": ("cuLaunchKernelEx", launch_payload(CLIENT_ID | 8, (1, 1, 1), (1, 1, 1), b"", nattrs=1)),
        "launch params over": ("cuLaunchKernel", launch[:-4] + u32(32765) + bytes(32765)),
        "launch params cut": ("cuLaunchKernel", launch[:-4] + u32(16) + bytes(8)),
        "launch cut": ("cuLaunchKernel", launch[:20]),
        "cluster trailing": ("cuOccupancyMaxActiveClusters", launch),
        "pointer attrs 33": ("cuPointerGetAttributes", u64(0) + u32(0, 33) + u32(*[1] * 33)),
        "pointer single 2": ("cuPointerGetAttribute", u64(0) + u32(1, 2, 1, 1)),
        "pointer attr unknown": ("cuPointerGetAttributes", u64(0) + u32(0, 1, 999)),
        "capture bits": ("cuStreamGetCaptureInfo_v2", u64(0) + u32(0x40)),
        "ctx affinity 65": ("cuCtxCreate_v3", u64(CLIENT_ID | 0x100) + u32(0) + u64(0) + u32(0, 1, 65) + bytes(65 * 8)),
        "ctx affinity cut": ("cuCtxCreate_v3", u64(CLIENT_ID | 0x100) + u32(0) + u64(0) + u32(0, 1, 2) + bytes(8)),
        "tex cut": ("cuTexObjectCreate", bytes(RESOURCE_DESC + 10)),
        "tex view cut": ("cuTexObjectCreate", bytes(RESOURCE_DESC + TEXTURE_DESC) + u32(1) + bytes(8)),
        "surf trailing": ("cuSurfObjectCreate", bytes(RESOURCE_DESC + 1)),
        "exec update want 2": ("cuGraphExecUpdate_v2", u64(0, 0) + u32(2)),
        "alloc node access 65": ("cuGraphAddMemAllocNode", u64(0) + u32(0) + bytes(ALLOC_PARAMS) + u32(65) + bytes(65 * ACCESS_DESC)),
        "alloc node deps over": ("cuGraphAddMemAllocNode", u64(0) + u32(1000) + bytes(64)),
        "conditional bodies 0": ("cuGraphAddNode_v2", u64(0) + u32(0) + u64(0) + u32(0, 0) + u64(0)),
        "conditional bodies over": ("cuGraphAddNode_v2", u64(0) + u32(0) + u64(0) + u32(0, 65537) + u64(0)),
        "kernel node params over": ("cuGraphAddKernelNode_v2", u64(0) + u32(0) + kp + u32(32765) + bytes(32765)),
        "kernel node deps over": ("cuGraphAddKernelNode_v2", u64(0) + u32(1000) + bytes(16)),
        "kernel node set cut": ("cuGraphKernelNodeSetParams_v2", u64(0) + kp[:30]),
        "memcpy node cut": ("cuGraphMemcpyNodeSetParams", u64(0) + bytes(MEMCPY3D - 1)),
        "dot trailing": ("cuGraphDebugDotPrint", u64(0) + u32(0) + b"x"),
        "pool attr cut": ("cuMemPoolSetAttribute", u64(0) + u32(4) + bytes(4)),
        "jit options 65": ("cuModuleLoadDataEx", u64(CLIENT_ID | 0x200, 8) + u32(65) + bytes(65 * 12) + u32(0)),
        "jit log 0": ("cuModuleLoadDataEx", u64(CLIENT_ID | 0x200, 8) + u32(1) + u32(4) + u64(0) + u32(0)),
        "jit option pointer": ("cuLinkCreate_v2", u32(1) + u32(3) + u64(0)),
        "library options 65": ("cuLibraryLoadData", u64(CLIENT_ID | 0x200, 8) + u32(0) + u32(65) + bytes(65 * 12)),
        "library option pointer": ("cuLibraryLoadData", u64(CLIENT_ID | 0x200, 8) + u32(0) + u32(1) + u32(0) + u64(1)),
        "link add name cut": ("cuLinkAddData_v2", u64(0) + u32(1) + u64(8) + u32(100) + b"abc"),
        "band types": ("cuMemcpy2D_v2", u64(0) + u32(1) + u64(0, 0) + u32(1) + u64(0, 0) + u64(16, 4)),
        "band over chunk": ("cuMemcpy2D_v2", u64(0) + u32(2) + u64(0, 0) + u32(2) + u64(0, 0) + u64(1 << 20, 8)),
        "band side cut": ("cuMemcpy2D_v2", u64(0) + u32(3) + u64(0, 0)),
    }


def seed_nvml() -> bytes:
    s = Session()
    s.frame("nvmlInit_v2")
    s.frame("nvmlDeviceGetCount_v2", u32(1))
    k = s.frame("nvmlDeviceGetHandleByIndex_v2", u64(0) + u32(1))
    s.frame("nvmlDeviceGetMemoryInfo", u64(ph(k)) + u32(1))
    s.frame("nvmlDeviceGetName", u64(ph(k)) + u32(96) + u64(96))
    s.frame(OP_NVML_TABLE_CALL, u32(230) + u64(ph(k)) + u32(0))  # NVML's private table: a device value
    s.frame(OP_NVML_TABLE_CALL, u32(213) + u64(ph(k)) + u32(4))  # and a process list
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
    "malformed": seed_malformed, "landings": seed_landings, "formats": seed_formats,
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
