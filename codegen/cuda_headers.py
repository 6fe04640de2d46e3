"""Read what the generator needs out of the CUDA 13 headers.

- the parameter lists of every driver entry point (generated_cuda_meta.h, which
  spells out each exported symbol's parameters, versioned names included);
- the type vocabulary of cuda.h (handles, enums, scalars, structs, callbacks);
- the versions cuGetProcAddress knows for each API name (cudaTypedefs.h, and
  cudaProfilerTypedefs.h for cuProfilerStart/Stop, which cudart looks up).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

CUDA_INCLUDE = os.environ.get("CUDA_INCLUDE", "/usr/local/cuda/include")

BUILTIN_SCALARS = {
    "char", "signed char", "unsigned char", "short", "unsigned short", "int",
    "unsigned int", "unsigned", "long", "unsigned long", "long long",
    "unsigned long long", "size_t", "float", "double", "cuuint32_t",
    "cuuint64_t", "uint32_t", "uint64_t", "int32_t", "int64_t", "uint8_t",
    "uint16_t", "int8_t", "int16_t",
}
FLOAT_SCALARS = {"float", "double"}


@dataclass
class Param:
    ctype: str  # the C type as written, e.g. "const void *"
    name: str


@dataclass
class Proto:
    name: str
    params: list[Param] = field(default_factory=list)


@dataclass
class TypeInfo:
    kind: str  # scalar | float | handle | enum | struct | fnptr | void
    base: str  # the resolved builtin for scalars


def _read(name: str) -> str:
    with open(os.path.join(CUDA_INCLUDE, name), encoding="utf-8") as f:
        return f.read()


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def read_prototypes() -> dict[str, Proto]:
    """Symbol name -> parameters, from the CUPTI parameter structs."""
    text = _strip_comments(_read("generated_cuda_meta.h"))
    protos: dict[str, Proto] = {}
    for m in re.finditer(r"typedef struct (\w+)_params_st \{(.*?)\}\s*\w+;", text, re.S):
        proto = Proto(m.group(1))
        for decl in m.group(2).split(";"):
            decl = " ".join(decl.split())
            if not decl or decl == "int dummy":
                continue
            pm = re.match(r"(.*?)(\w+)$", decl)
            ctype = pm.group(1).strip()
            ctype = re.sub(r"\s*\*", " *", ctype).replace("* *", "**").strip()
            proto.params.append(Param(ctype, pm.group(2)))
        protos[proto.name] = proto
    return protos


def read_types() -> dict[str, TypeInfo]:
    text = _strip_comments(_read("cuda.h"))
    types: dict[str, TypeInfo] = {b: TypeInfo("float" if b in FLOAT_SCALARS else "scalar", b)
                                  for b in BUILTIN_SCALARS}
    types["void"] = TypeInfo("void", "void")
    for m in re.finditer(r"typedef struct \w+ \*(\w+);", text):
        types[m.group(1)] = TypeInfo("handle", m.group(1))
    for m in re.finditer(r"typedef [\w ]+\(CUDA_CB \*(\w+)\)", text):
        types[m.group(1)] = TypeInfo("fnptr", m.group(1))
    # enum / struct / union bodies: find the closing name after matching braces
    for m in re.finditer(r"typedef (enum|struct|union)\s*(\w*)\s*\{", text):
        depth, i = 1, m.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        nm = re.match(r"\s*(\w+)", text[i:])
        kind = "enum" if m.group(1) == "enum" else "struct"
        if nm:
            types[nm.group(1)] = TypeInfo(kind, nm.group(1))
        if m.group(2):
            types[f"{m.group(1)} {m.group(2)}"] = TypeInfo(kind, m.group(2))
    # versioned by a macro: typedef _CONCAT_OUTER(CUdevResource_v, RESOURCE_ABI_VERSION) CUdevResource;
    for m in re.finditer(r"typedef _CONCAT_OUTER\(\w+,\s*\w+\)\s+(\w+)\s*;", text):
        types[m.group(1)] = TypeInfo("struct", m.group(1))
    aliases = re.findall(r"typedef\s+((?:enum |struct |union )?[\w ]+?)\s+(\w+)\s*;", text)
    for _ in range(4):  # aliases of aliases
        for src, dst in aliases:
            src = " ".join(src.split())
            if src in types and dst not in types:
                types[dst] = types[src]
    # 32-bit device pointers exist only for the pre-3.2 entry points, declared
    # under __CUDA_API_VERSION_INTERNAL: those are not forwarded.
    for legacy in [t for t in types if t.endswith("_v1") and t.startswith(("CUdeviceptr", "CUDA_"))]:
        del types[legacy]
    return types


def classify(ctype: str, types: dict[str, TypeInfo]) -> tuple[str, int, bool]:
    """(base type name, pointer depth, const) for a parameter's C type."""
    const = ctype.startswith("const ")
    core = ctype.replace("const ", "").strip()
    depth = core.count("*")
    base = core.replace("*", "").strip()
    return base, depth, const


_PFN = re.compile(r"PFN_(\w+?)_v(\d+)(_ptds|_ptsz)?\)")


def read_proc_versions() -> dict[str, list[tuple[int, str]]]:
    """API name -> [(version, suffix)] as cudaTypedefs.h and cudaProfilerTypedefs.h list them."""
    text = _read("cudaTypedefs.h") + _read("cudaProfilerTypedefs.h")
    out: dict[str, list[tuple[int, str]]] = {}
    for m in _PFN.finditer(text):
        out.setdefault(m.group(1), []).append((int(m.group(2)), m.group(3) or ""))
    for k in out:
        out[k] = sorted(set(out[k]))
    return out
