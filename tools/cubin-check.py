#!/usr/bin/env python3
"""The client's cubin reading (native/client/state/cubin_info.c) against the real driver,
on the GPU machine: for every cubin given (files or folders of *.cubin), the
kernels, parameter layouts, static shared size and register count the client
reads from the image, and what the driver says for each (cuLibraryLoadData,
cuLibraryEnumerateKernels, cuKernelGetParamInfo, cuKernelGetAttribute). Prints
each difference and a summary line last. Cubins for another SM than the device's
are skipped (the client does not use its reading for them either).

Usage: tools/cubin-check.py CUBIN_OR_DIR...   (natively, libcuda.so.1 of the driver)
Feed it the cubins a run kept (GPUWIRE_CUBIN_KEEP=DIR) to check exactly those."""
import ctypes
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DUMPER = r"""
#include <stdio.h>
#include <stdlib.h>
#include "cubin_info.h"
int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f) return 2;
        fseek(f, 0, SEEK_END);
        long n = ftell(f);
        rewind(f);
        unsigned char *b = malloc(n ? n : 1);
        if (!b || fread(b, 1, n, f) != (size_t)n) return 2;
        fclose(f);
        gw_cubin_info ci;
        int rc = gw_cubin_parse(b, n, &ci);
        printf("image %s %d %u\n", argv[i], rc, ci.sm);
        for (unsigned k = 0; rc == 0 && k < ci.n; k++) {
            const gw_cubin_kernel *K = &ci.k[k];
            printf("kernel %s %u %u %u", K->name, K->static_shared, K->num_regs, K->nparams);
            for (unsigned j = 0; j < K->nparams; j++)
                printf(" %u:%u", K->pairs[2 * j], K->pairs[2 * j + 1]);
            printf("\n");
        }
        if (rc == 0) gw_cubin_free(&ci);
        free(b);
    }
    return 0;
}
"""


def read_all(paths):
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "dump.c"
        src.write_text(DUMPER)
        exe = Path(d) / "dump"
        subprocess.run(["cc", "-O1", "-I", str(ROOT / "native/client/state"), str(src),
                        str(ROOT / "native/client/state/cubin_info.c"), "-o", str(exe)], check=True)
        out = subprocess.run([str(exe), *map(str, paths)], capture_output=True, text=True, check=True).stdout
    images, cur = {}, None
    for line in out.splitlines():
        w = line.split()
        if w[0] == "image":
            cur = images[w[1]] = {"rc": int(w[2]), "sm": int(w[3]), "kernels": {}}
        else:
            name, shared, regs, n = w[1], int(w[2]), int(w[3]), int(w[4])
            pairs = [tuple(map(int, p.split(":"))) for p in w[5:5 + n]]
            cur["kernels"][name] = {"shared": shared, "regs": regs, "pairs": pairs}
    return images


def main():
    files = []
    for a in sys.argv[1:]:
        p = Path(a)
        files += sorted(p.glob("*.cubin")) if p.is_dir() else [p]
    if not files:
        print("cubin-check: no cubins given")
        return 1
    mine = read_all(files)
    cu = ctypes.CDLL("libcuda.so.1")
    assert cu.cuInit(0) == 0
    dev, ctx = ctypes.c_int(), ctypes.c_void_p()
    assert cu.cuDeviceGet(ctypes.byref(dev), 0) == 0
    assert cu.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) == 0
    assert cu.cuCtxSetCurrent(ctx) == 0
    major, minor = ctypes.c_int(), ctypes.c_int()
    cu.cuDeviceGetAttribute(ctypes.byref(major), 75, dev)
    cu.cuDeviceGetAttribute(ctypes.byref(minor), 76, dev)
    sm_here = major.value * 10 + minor.value
    counts = {"cubins": 0, "unread": 0, "other_sm": 0, "kernels": 0, "differences": 0}
    for f in files:
        counts["cubins"] += 1
        m = mine[str(f)]
        if m["rc"] != 0:
            counts["unread"] += 1
            print(f"{f.name}: the client does not read it (it waits for the driver's list)")
            continue
        if m["sm"] // 10 != sm_here // 10 or m["sm"] % 10 > sm_here % 10:
            counts["other_sm"] += 1
            continue
        data = ctypes.create_string_buffer(f.read_bytes())
        lib = ctypes.c_void_p()
        rc = cu.cuLibraryLoadData(ctypes.byref(lib), data, None, None, 0, None, None, 0)
        if rc != 0:
            print(f"{f.name}: the driver refuses it ({rc})")
            counts["differences"] += 1
            continue
        n = ctypes.c_uint()
        cu.cuLibraryGetKernelCount(ctypes.byref(n), lib)
        ks = (ctypes.c_void_p * max(n.value, 1))()
        cu.cuLibraryEnumerateKernels(ks, n, lib)
        theirs = {}
        for k in ks[:n.value]:
            name = ctypes.c_char_p()
            cu.cuKernelGetName(ctypes.byref(name), ctypes.c_void_p(k))
            attrs = []
            for a in range(16):
                v = ctypes.c_int(-1)
                cu.cuKernelGetAttribute(ctypes.byref(v), a, ctypes.c_void_p(k), dev)
                attrs.append(v.value)
            pairs, i = [], 0
            while True:
                off, size = ctypes.c_size_t(), ctypes.c_size_t()
                if cu.cuKernelGetParamInfo(ctypes.c_void_p(k), ctypes.c_size_t(i), ctypes.byref(off),
                                           ctypes.byref(size)) != 0:
                    break
                pairs.append((off.value, size.value))
                i += 1
            theirs[name.value.decode()] = {"shared": attrs[1], "regs": attrs[4], "pairs": pairs, "attrs": attrs}
        if set(theirs) != set(m["kernels"]):
            counts["differences"] += 1
            print(f"{f.name}: kernels differ: read {sorted(m['kernels'])}, driver {sorted(theirs)}")
        for name in set(theirs) & set(m["kernels"]):
            counts["kernels"] += 1
            a, b = m["kernels"][name], theirs[name]
            for what in ("pairs", "shared", "regs"):
                if what == "shared" and a[what] == 0xFFFFFFFF:
                    continue  # the client leaves it unknown (sm_100 and later)
                if a[what] != b[what]:
                    counts["differences"] += 1
                    print(f"{f.name}: {name[:90]}: {what} read {a[what]}, driver {b[what]} (attributes {b['attrs']})")
        cu.cuLibraryUnload(lib)
    print("cubin-check: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    return 1 if counts["differences"] else 0


if __name__ == "__main__":
    sys.exit(main())
