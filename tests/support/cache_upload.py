"""Run under `gpuwire run` by tests/e2e/test_cache*.py: upload bytes to the GPU
through the driver API (ctypes) and read them back.

    python cache_upload.py SEED MIB [--file PATH] [--image FATBIN] [--async] [--copies N]

Uploads MIB MiB made from SEED (or the file's bytes, from an mmap of it),
reads them back and prints one line: RESULT {"ok": ..., "sha256": ...}.
--copies N: N uploads in one session, of MIB MiB each from seeds SEED..SEED+N-1
(each to its own allocation, each read back; "sha256" is the last one's).
--same-dst: with --copies, every upload goes to the same allocation (a buffer
refilled each step, as llama.cpp's input embeddings).
--refill K: then K more uploads of new bytes into the last allocation (a
buffer refilled each step after a model's load, llama.cpp's batch input).
--pinned: the source is page-locked (cuMemHostAlloc), as a data loader's staging.
--counting: the bytes count up as 32-bit integers (SEED ignored), as many CUDA samples
fill their inputs: a smaller upload is a prefix of a larger one."""

import ctypes
import hashlib
import json
import mmap
import array
import random
import sys


def main() -> int:
    seed, mib = int(sys.argv[1]), float(sys.argv[2])
    args = sys.argv[3:]
    path = args[args.index("--file") + 1] if "--file" in args else None
    image = args[args.index("--image") + 1] if "--image" in args else None
    lib = ctypes.CDLL("libcuda.so.1")
    res: dict = {}

    def check(name, rc):
        if rc != 0:
            res.setdefault("errors", []).append(f"{name}: {rc}")
        return rc == 0

    check("cuInit", lib.cuInit(0))
    dev = ctypes.c_int()
    check("cuDeviceGet", lib.cuDeviceGet(ctypes.byref(dev), 0))
    ctx = ctypes.c_void_p()
    check("cuDevicePrimaryCtxRetain", lib.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev))
    check("cuCtxSetCurrent", lib.cuCtxSetCurrent(ctx))
    keep = None
    copies = int(args[args.index("--copies") + 1]) if "--copies" in args else 1
    refills = int(args[args.index("--refill") + 1]) if "--refill" in args else 0
    for k in range(copies + refills):
        if path:
            # a private writable mapping, as torch.UntypedStorage.from_file(shared=False) makes:
            # the pages stay the file's until written
            f = open(path, "rb")
            keep = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
            data = keep
        elif "--counting" in args:
            data = array.array("i", range(int(mib * (1 << 20)) // 4)).tobytes()
        else:
            data = random.Random(seed + k).randbytes(int(mib * (1 << 20)))
        n = len(data)
        expect = hashlib.sha256(data).hexdigest()
        if (k == 0 or "--same-dst" not in args) and k < copies:
            dptr = ctypes.c_uint64()
            check("cuMemAlloc", lib.cuMemAlloc_v2(ctypes.byref(dptr), ctypes.c_size_t(n)))
        if path:
            host = ctypes.addressof(ctypes.c_char.from_buffer(keep))
        elif "--pinned" in args:
            pinned = ctypes.c_void_p()
            check("cuMemHostAlloc", lib.cuMemHostAlloc(ctypes.byref(pinned), ctypes.c_size_t(n), 0))
            ctypes.memmove(pinned, data, n)
            host = pinned.value
        else:
            hostbuf = ctypes.create_string_buffer(data, n)
            host = ctypes.addressof(hostbuf)
        if "--async" in args:
            check("cuMemcpyHtoDAsync", lib.cuMemcpyHtoDAsync_v2(dptr, ctypes.c_void_p(host), ctypes.c_size_t(n), None))
            check("cuStreamSynchronize", lib.cuStreamSynchronize(None))
        else:
            check("cuMemcpyHtoD", lib.cuMemcpyHtoD_v2(dptr, ctypes.c_void_p(host), ctypes.c_size_t(n)))
        back = ctypes.create_string_buffer(n)
        check("cuMemcpyDtoH", lib.cuMemcpyDtoH_v2(back, dptr, ctypes.c_size_t(n)))
        got = hashlib.sha256(back.raw[:n]).hexdigest()
        if got != expect:
            res.setdefault("errors", []).append(f"copy {k}: the GPU holds other bytes")
    if image:
        img = open(image, "rb").read()
        mod = ctypes.c_void_p()
        check("cuModuleLoadData", lib.cuModuleLoadData(ctypes.byref(mod), ctypes.c_char_p(img)))
        check("cuCtxSynchronize", lib.cuCtxSynchronize())
        res["module"] = bool(mod.value)
    res.update(ok=got == expect and "errors" not in res, sha256=got, expected=expect, bytes=n)
    print("RESULT " + json.dumps(res), flush=True)
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
