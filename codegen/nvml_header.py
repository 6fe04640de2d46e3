"""Read what the NVML generator needs out of nvml.h: the prototype of every
exported entry point (under the symbol it really declares: the header maps
old names onto versioned ones with macros) and the type vocabulary.

The header is never committed. It is looked for in this order:
  $NVML_HEADER, /usr/local/cuda/include/nvml.h, build/nvml/include/nvml.h
(the last is unpacked from the pinned pip wheel by scripts/setup).
"""
from __future__ import annotations

import os
import re

import cuda_headers as hdr

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CANDIDATES = ("/usr/local/cuda/include/nvml.h", os.path.join(ROOT, "build", "nvml", "include", "nvml.h"))


def header_path() -> str:
    env = os.environ.get("NVML_HEADER")
    if env:
        return env
    for path in CANDIDATES:
        if os.path.isfile(path):
            return path
    raise SystemExit("nvml.h not found (looked at $NVML_HEADER and " + ", ".join(CANDIDATES)
                     + "): run ./scripts/setup, which unpacks it from the nvidia-nvml-dev wheel into build/nvml/")


def read_text() -> str:
    with open(header_path(), encoding="utf-8") as f:
        return f.read()


def api_version(text: str) -> str:
    m = re.search(r'#define\s+NVML_API_VERSION_STR\s+"(\w+)"', text)
    return m.group(1) if m else "?"


def _params(arglist: str) -> list[hdr.Param]:
    arglist = " ".join(arglist.split())
    if arglist in ("", "void"):
        return []
    out = []
    for decl in arglist.split(","):
        decl = decl.strip()
        m = re.match(r"(.*?)(\w+)\s*(\[\s*\w*\s*\])?$", decl)
        ctype = re.sub(r"\s*\*", " *", m.group(1).strip()).replace("* *", "**").strip()
        if m.group(3):  # an array parameter is a pointer
            ctype += " *"
        out.append(hdr.Param(ctype, m.group(2)))
    return out


def read_prototypes(text: str) -> dict[str, hdr.Proto]:
    """Symbol -> prototype. Declarations outside the NVML_NO_UNVERSIONED_FUNC_DEFS
    block name the symbol through the auto-upgrade macros; those inside it are
    the old symbols under their own names."""
    body = hdr._strip_comments(text)
    macros = {}
    m = re.search(r"#ifndef NVML_NO_UNVERSIONED_FUNC_DEFS(.*?)#endif", body, re.S)
    if m:
        macros = dict(re.findall(r"#define\s+(nvml\w+)\s+(nvml\w+)", m.group(1)))
    old = re.search(r"#ifdef NVML_NO_UNVERSIONED_FUNC_DEFS(.*?)#endif", body, re.S)
    old_text = old.group(1) if old else ""
    main_text = body.replace(old_text, "") if old_text else body
    decl = re.compile(r"nvmlReturn_t\s+DECLDIR\s+(nvml\w+)\s*\(([^)]*)\)\s*;")
    protos: dict[str, hdr.Proto] = {}
    for name, args in decl.findall(main_text):
        sym = macros.get(name, name)
        protos[sym] = hdr.Proto(sym, _params(args))
    for name, args in decl.findall(old_text):
        protos.setdefault(name, hdr.Proto(name, _params(args)))
    return protos


def read_types(text: str) -> dict[str, hdr.TypeInfo]:
    body = hdr._strip_comments(text)
    types = {b: hdr.TypeInfo("float" if b in hdr.FLOAT_SCALARS else "scalar", b) for b in hdr.BUILTIN_SCALARS}
    types["void"] = hdr.TypeInfo("void", "void")
    for m in re.finditer(r"typedef\s+struct\s+\w+\s*\*\s*(\w+)\s*;", body):
        types[m.group(1)] = hdr.TypeInfo("handle", m.group(1))
    for m in re.finditer(r"typedef\s+[\w ]+\(\s*\*\s*(\w+)\s*\)", body):
        types[m.group(1)] = hdr.TypeInfo("fnptr", m.group(1))
    for m in re.finditer(r"typedef\s+(enum|struct|union)\s*(\w*)\s*\{", body):
        depth, i = 1, m.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(body[i], 0)
            i += 1
        names = re.match(r"\s*([\w\s,*]*?)\s*;", body[i:])
        kind = "enum" if m.group(1) == "enum" else "struct"
        for nm in (names.group(1).split(",") if names else []):
            nm = nm.strip()
            if re.fullmatch(r"\w+", nm):
                types[nm] = hdr.TypeInfo(kind, nm)
        if m.group(2):
            types[f"{m.group(1)} {m.group(2)}"] = hdr.TypeInfo(kind, m.group(2))
    aliases = re.findall(r"typedef\s+((?:enum |struct |union )?[\w ]+?)\s+(\w+)\s*;", body)
    for _ in range(4):
        for src, dst in aliases:
            src = " ".join(src.split())
            if src in types and dst not in types:
                types[dst] = types[src]
    return types


def versioned_structs(text: str) -> set[str]:
    """Names (typedefs and their aliases) of the structs whose first member is
    `unsigned int version`: the caller names the layout it passes, and a newer
    one than this header's is larger than the struct the worker holds."""
    body = hdr._strip_comments(text)
    names: set[str] = set()
    for m in re.finditer(r"typedef\s+struct\s*\w*\s*\{", body):
        if not re.match(r"\s*unsigned\s+int\s+version\s*;", body[m.end():]):
            continue
        depth, i = 1, m.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(body[i], 0)
            i += 1
        tail = re.match(r"\s*([\w\s,*]*?)\s*;", body[i:])
        names.update(n.strip() for n in (tail.group(1).split(",") if tail else []) if re.fullmatch(r"\s*\w+\s*", n))
    aliases = re.findall(r"typedef\s+(\w+)\s+(\w+)\s*;", body)
    for _ in range(4):
        names.update(dst for src, dst in aliases if src in names)
    return names


def error_codes(text: str) -> list[tuple[str, int]]:
    """(NVML_SUCCESS / NVML_ERROR_*, value) in value order."""
    body = hdr._strip_comments(text)
    found = {(n, int(v)) for n, v in re.findall(r"\b(NVML_(?:SUCCESS|ERROR_\w+))\s*=\s*(\d+)", body)}
    return sorted(found, key=lambda x: (x[1], x[0]))
