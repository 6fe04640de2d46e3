#!/usr/bin/env python3
"""Prints the kernel parameter layouts nvcc recorded in cubins, one line per kernel:
"name nparams offset:size ...", sorted by name (the stand-in's --dump-registry format).

Reads each cubin's .nv.info.<kernel> section: a list of attributes {u8 format, u8 id,
u16 size, payload}; id 0x17 (KPARAM_INFO) holds u32 index, u16 ordinal, u16 offset and a u32
whose bits 18..31 are the parameter size. Used by `make -C tests/standin layouts`."""
import struct
import sys

KPARAM_INFO = 0x17
FMT_SVAL = 0x04


def sections(data):
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    heads = [struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize) for i in range(shnum)]
    stroff = heads[shstrndx][4]
    for name, _typ, _flags, _addr, off, size in heads:
        end = data.index(b"\0", stroff + name)
        yield data[stroff + name:end].decode(), data[off:off + size]


def layouts(path):
    with open(path, "rb") as f:
        data = f.read()
    for name, body in sections(data):
        if not name.startswith(".nv.info."):
            continue
        params = []
        p = 0
        while p + 4 <= len(body):
            fmt, attr, size = struct.unpack_from("<BBH", body, p)
            if fmt != FMT_SVAL:
                p += 4  # fixed-size attribute: no payload
                continue
            if attr == KPARAM_INFO:
                _idx, ordinal, offset, tail = struct.unpack_from("<IHHI", body, p + 4)
                params.append((ordinal, offset, (tail >> 18) & 0x3FFF))
            p += 4 + size
        yield name[len(".nv.info."):], sorted(params)


def main():
    lines = []
    for path in sys.argv[1:]:
        for kernel, params in layouts(path):
            cols = " ".join(f"{off}:{size}" for _o, off, size in params)
            lines.append(f"{kernel} {len(params)} {cols}".rstrip())
    print("\n".join(sorted(lines)))


if __name__ == "__main__":
    main()
