"""Parse codegen/protocol.txt, the one declaration of gpuwire's own wire.

Line forms ('#' starts a comment unless inside a quoted string; '|' starts a
description; indented lines belong to the block above them, up to a blank line):
    const NAME TYPE VALUE        TYPE: u32 | u64 | int | str (a quoted C string)
    flag NAME VALUE              a frame flag (header flags)
    error NAME VALUE WORD        an ERROR code and its one-word name
    ext NAME VALUE CODEC FIELD   a HELLO extension record; CODEC: bool u32 u64 env reserved bit
    env_forwarded NAME...        the client variables EXT_ENV may carry
    ok NAME VALUE                a HELLO_OK flag
    value GROUP NAME VALUE       a named value of GROUP (CAS_TARGET_COPY ...)
    struct NAME SIZE PYNAME      a fixed layout; indented lines: TYPE NAME
    op NAME ID DIR [PROP...]     a control op; indented 'request:' / 'reply:' field lists
    alias OLD NEW                an old op name kept for a while
    label NAME TEXT              how statistics and profiles name a control op
    format NAME [SYMBOL...]      a hand-written payload (of those driver calls, or a part of
                                 another payload); indented 'request:' / 'reply:' field lists
FIELDS (comma-separated, in wire order):
    TYPE NAME, TYPE[N] NAME      u8 u16 u32 u64 i32 f64 char: a scalar, or N of them
    struct:NAME NAME             a declared struct
    raw:CTYPE NAME               a cuda.h struct as cuda.h lays it out: sizeof(CTYPE) bytes
    list[COUNT]:(FIELDS) [NAME]  COUNT (an earlier field) items of fixed-size FIELDS;
    list[COUNT<=MAX]:(...) NAME  ... at most MAX (a const or a number), checked by the decoder;
                                 in a reply, COUNT (and opt's FLAG) may be request.NAME
    bytes[COUNT<=MAX] NAME       COUNT bytes (at most MAX)
    opt[FLAG]:(FIELDS) NAME      fixed-size FIELDS, there only if the earlier field FLAG is not 0
    opt[FLAG==V]:(...) NAME      ... only if FLAG is V (!= V: is not; &V: has a bit of V);
                                 V a const or a number
    str NAME                     u32 length (0xFFFFFFFF: NULL) + that many bytes, <= 64 KiB, no NUL
    fmt:FORMAT NAME              an earlier format's request fields, in place
    bytes NAME, text NAME        the rest of the payload (last only)
    sstats magic HEX TAG | sstats env NAME | sstats field NAME   the session-stats block
    trailer VERSION TAG          a content-store entry trailer; indented lines: TYPE NAME
VALUE: an integer expression of digits, '*', '+', '<<' and parentheses.
Every mistake is refused with the file, line and what is wrong.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

SCALARS = {"u8": ("B", 1, "uint8_t"), "u16": ("H", 2, "uint16_t"), "u32": ("I", 4, "uint32_t"),
           "u64": ("Q", 8, "uint64_t"), "i32": ("i", 4, "int32_t"), "f64": ("d", 8, "double"),
           "char": ("s", 1, "char")}
DIRECTIONS = {"c>s", "s>c", "c>w", "w>c"}
OP_PROPS = {"control", "cas", "posted", "pushed", "benign"}
EXT_CODECS = {"bool": 1, "u32": 4, "u64": 8, "env": None, "reserved": None, "bit": None}
_VALUE = re.compile(r"^[0-9a-fA-Fx\s*+<()]+$")


class DeclError(SystemExit):
    pass


@dataclass
class Field:
    type: str                 # u8.. f64 | char | bytes | text | struct | list | raw | opt | str | fmt
    name: str
    count: str | None = None  # TYPE[N]: N; list[COUNT] / bytes[COUNT]: COUNT
    struct: str | None = None  # struct: its name; raw: the cuda.h type; fmt: the format
    items: list["Field"] = field(default_factory=list)
    doc: str = ""
    max: str | None = None    # list / bytes[COUNT<=MAX]: MAX
    cond: tuple | None = None  # opt: (flag field, "!=", "==" or "&", value text)

    @property
    def fixed(self) -> bool:
        """A fixed-size field: a scalar (or array of them) or a raw cuda.h struct."""
        return self.type in SCALARS or self.type == "raw"

    @property
    def scalar(self) -> bool:
        return self.type in SCALARS

    def size(self, consts) -> int:
        n = 1 if self.count is None else int(consts.get(self.count, self.count))
        return SCALARS[self.type][1] * n


@dataclass
class Const:
    name: str
    type: str
    expr: str
    value: object
    doc: str = ""


@dataclass
class Enum:
    name: str
    value: int
    expr: str
    doc: str = ""
    word: str = ""     # errors: the one-word name
    codec: str = ""    # extensions
    pyfield: str = ""  # extensions: HelloExt's field


@dataclass
class Struct:
    name: str
    size: int
    pyname: str
    fields: list[Field]
    doc: str = ""


@dataclass
class Op:
    name: str
    id: int
    dirs: list[str]
    props: set[str]
    doc: str = ""
    label: str = ""
    request: list[Field] = field(default_factory=list)
    reply: list[Field] = field(default_factory=list)


@dataclass
class Wire:
    consts: dict[str, Const] = field(default_factory=dict)
    flags: list[Enum] = field(default_factory=list)
    errors: list[Enum] = field(default_factory=list)
    exts: list[Enum] = field(default_factory=list)
    env_forwarded: list[str] = field(default_factory=list)
    oks: list[Enum] = field(default_factory=list)
    values: dict[str, list[Enum]] = field(default_factory=dict)
    structs: dict[str, Struct] = field(default_factory=dict)
    ops: list[Op] = field(default_factory=list)
    formats: list[Op] = field(default_factory=list)  # hand-written payloads: id 0, dirs = the driver calls
    aliases: list[tuple[str, str]] = field(default_factory=list)
    sstats_magic: int = 0
    sstats_tag: str = ""
    sstats_env: str = ""
    sstats_fields: list[Field] = field(default_factory=list)
    trailers: dict[str, tuple[str, str, list[Field]]] = field(default_factory=dict)

    def op(self, name: str) -> Op:
        return next(o for o in self.ops if o.name == name)

    def int_consts(self) -> dict[str, int]:
        return {c.name: c.value for c in self.consts.values() if isinstance(c.value, int)}


def _split_doc(line: str) -> tuple[str, str]:
    """Code and description; '#' and '|' inside double quotes do not count."""
    out, quoted = [], False
    for i, ch in enumerate(line):
        if ch == '"':
            quoted = not quoted
        elif not quoted and ch == "#":
            return "".join(out), ""
        elif not quoted and ch == "|":
            return "".join(out), line[i + 1:].split(" #")[0].strip()
        out.append(ch)
    return "".join(out), ""


def _split_top(text: str) -> list[str]:
    """Comma-separated items, commas inside parentheses not splitting."""
    items, depth, cur = [], 0, []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            items.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        items.append("".join(cur).strip())
    return items


class _Parser:
    def __init__(self, path: str):
        self.path = path
        self.wire = Wire()
        self.lineno = 0

    def fail(self, why: str):
        raise DeclError(f"{self.path}:{self.lineno}: {why}")

    def value(self, expr: str) -> int:
        expr = expr.strip()
        if not expr or not _VALUE.match(expr):
            self.fail(f"bad value {expr!r}: integers, *, +, << and parentheses only")
        try:
            return int(eval(expr, {"__builtins__": {}}))  # only the characters above reach here
        except Exception:
            self.fail(f"bad value {expr!r}")

    def bound(self, text: str) -> str:
        """A maximum or a compared value: digits or a declared int const."""
        if not text.isdigit() and text not in self.wire.int_consts():
            self.fail(f"unknown limit {text!r}: a number or a declared const")
        return text

    def field(self, text: str) -> Field:
        text = text.strip()
        m = re.fullmatch(r"(list|opt)\[([^\]]+)\]:\((.*)\)(?:\s+(\w+))?", text)
        if m:
            kind, head, inner, name = m.groups()
            items = [self.field(x) for x in _split_top(inner)]
            if not items or not all(i.fixed for i in items):
                self.fail(f"{kind} items must be fixed-size: {text!r}")
            if len({i.name for i in items}) != len(items):
                self.fail(f"a field name appears twice in {text!r}")
            if kind == "opt":
                c = re.fullmatch(r"((?:request\.)?\w+)(?:\s*(==|!=|&)\s*(\w+))?", head.strip())
                if not c or not name:
                    self.fail(f"opt[FLAG]:(FIELDS) NAME or opt[FLAG==VALUE]:(FIELDS) NAME: {text!r}")
                flag, rel, val = c.groups()
                cond = (flag, rel or "!=", self.bound(val) if val else "0")
                return Field("opt", name, items=items, cond=cond)
            c = re.fullmatch(r"((?:request\.)?\w+)(?:\s*<=\s*(\w+))?", head.strip())
            if not c:
                self.fail(f"list[COUNT] or list[COUNT<=MAX]: {text!r}")
            mx = self.bound(c.group(2)) if c.group(2) else None
            if mx and not name:
                self.fail(f"a list with a maximum is named: {text!r}")
            return Field("list", name or "items", count=c.group(1), items=items, max=mx)
        m = re.fullmatch(r"bytes\[(\w+)\s*<=\s*(\w+)\]\s+(\w+)", text)
        if m:
            return Field("bytes", m.group(3), count=m.group(1), max=self.bound(m.group(2)))
        m = re.fullmatch(r"(raw|fmt):(\w+)\s+(\w+)", text)
        if m:
            kind, what, name = m.groups()
            if kind == "fmt" and not any(f.name == what for f in self.wire.formats):
                self.fail(f"field {name}: unknown format {what!r} (declare it before its use)")
            if kind == "raw" and not re.fullmatch(r"CU[A-Za-z0-9_]+", what):
                self.fail(f"field {name}: {what!r} is not a cuda.h type (CU...)")
            return Field(kind, name, struct=what)
        m = re.fullmatch(r"(\w+)(?:\[(\w+)\])?(?::(\w+))?\s+(\w+)", text)
        if not m:
            self.fail(f"bad field {text!r}: expected TYPE NAME")
        typ, count, sname, name = m.groups()
        if typ == "struct":
            if sname not in self.wire.structs:
                self.fail(f"field {name}: unknown struct {sname!r}")
            return Field("struct", name, struct=sname)
        if typ in ("bytes", "text", "str"):
            return Field(typ, name)
        if typ not in SCALARS:
            self.fail(f"field {name}: unknown type {typ!r}")
        if count is not None and not count.isdigit() and count not in self.wire.int_consts():
            self.fail(f"field {name}: unknown count {count!r}")
        return Field(typ, name, count=count)

    def fields(self, text: str, request: list[Field] | None = None) -> list[Field]:
        """A field list; a reply's (request given) may count or guard by the request's fields: request.NAME."""
        out = [self.field(x) for x in _split_top(text)]
        for f in out[:-1]:
            if f.type in ("bytes", "text") and f.count is None:
                self.fail(f"{f.type} {f.name} takes the rest of the payload: it must come last")
        names = [f.name for f in out]
        if len(set(names)) != len(names):
            self.fail(f"a field name appears twice in {text!r}")
        for i, f in enumerate(out):
            ref = f.count if f.type in ("list", "bytes") and f.count else f.cond[0] if f.type == "opt" else None
            if ref is None:
                continue
            scope = out[:i]
            if ref.startswith("request.") and request is not None:
                ref, scope = ref.split(".", 1)[1], request
            earlier = next((e for e in scope if e.name == ref), None)
            if earlier is None or not earlier.scalar or earlier.count or earlier.type in ("char", "f64"):
                self.fail(f"{f.type} {f.name}: {ref!r} is not an earlier integer field of this list")
        return out

    def parse(self) -> Wire:
        w = self.wire
        block = None  # (kind, object) the indented lines belong to
        with open(self.path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        for self.lineno, raw in enumerate(lines, 1):
            code, doc = _split_doc(raw)
            if not raw.strip():
                block = None  # a blank line ends a block
            if not code.strip():
                continue
            indented = code[0] in " \t"
            words = code.split()
            if indented:
                if block is None:
                    self.fail("an indented line outside a struct, op or trailer")
                self.block_line(block, code.strip(), doc)
                continue
            block = None
            kw, args = words[0], words[1:]
            if kw == "const":
                if len(args) < 3:
                    self.fail("const NAME TYPE VALUE")
                name, typ, expr = args[0], args[1], code.split(None, 3)[3].strip()
                if name in w.consts:
                    self.fail(f"const {name} declared twice")
                if typ == "str":
                    if not (expr.startswith('"') and expr.endswith('"')):
                        self.fail(f"const {name}: a str value is a quoted C string")
                    val = expr[1:-1].encode().decode("unicode_escape").encode("latin-1")
                elif typ in ("u32", "u64", "int"):
                    val = self.value(expr)
                else:
                    self.fail(f"const {name}: unknown type {typ!r}")
                w.consts[name] = Const(name, typ, expr, val, doc)
            elif kw in ("flag", "ok"):
                if len(args) < 2:
                    self.fail(f"{kw} NAME VALUE")
                lst = w.flags if kw == "flag" else w.oks
                lst.append(self.enum(lst, args[0], " ".join(args[1:]), doc))
            elif kw == "error":
                if len(args) != 3:
                    self.fail("error NAME VALUE WORD")
                e = self.enum(w.errors, args[0], args[1], doc)
                e.word = args[2]
                w.errors.append(e)
            elif kw == "ext":
                if len(args) != 4:
                    self.fail("ext NAME VALUE CODEC FIELD")
                if args[2] not in EXT_CODECS:
                    self.fail(f"ext {args[0]}: unknown codec {args[2]!r} (one of {', '.join(EXT_CODECS)})")
                e = self.enum(w.exts, args[0], args[1], doc)
                e.codec, e.pyfield = args[2], args[3]
                w.exts.append(e)
            elif kw == "env_forwarded":
                w.env_forwarded = args
            elif kw == "value":
                if len(args) < 3:
                    self.fail("value GROUP NAME VALUE")
                lst = w.values.setdefault(args[0], [])
                lst.append(self.enum(lst, args[1], " ".join(args[2:]), doc))
            elif kw == "struct":
                if len(args) != 3 or not args[1].isdigit():
                    self.fail("struct NAME SIZE PYNAME")
                if args[0] in w.structs:
                    self.fail(f"struct {args[0]} declared twice")
                s = Struct(args[0], int(args[1]), args[2], [], doc)
                w.structs[s.name] = s
                block = ("struct", s)
            elif kw == "op":
                if len(args) < 3:
                    self.fail("op NAME ID DIRECTION [PROPS]")
                name, opid = args[0], self.value(args[1])
                dirs = args[2].split(",")
                bad = [d for d in dirs if d not in DIRECTIONS] + [p for p in args[3:] if p not in OP_PROPS]
                if bad:
                    self.fail(f"op {name}: unknown direction or property {bad[0]!r}")
                if any(o.name == name or o.id == opid for o in w.ops):
                    self.fail(f"op {name} ({opid}): name or id declared twice")
                if not 0 < opid < 256:
                    self.fail(f"op {name}: control op ids are 1..255 (driver calls start at 256)")
                op = Op(name, opid, dirs, set(args[3:]), doc)
                w.ops.append(op)
                block = ("op", op)
            elif kw == "format":
                if not args or any(f.name == args[0] for f in w.formats) or not re.fullmatch(r"[A-Z0-9_]+", args[0]):
                    self.fail("format NAME [SYMBOL...]: NAME in capitals, declared once")
                fmt = Op(args[0], 0, args[1:], set(), doc)
                w.formats.append(fmt)
                block = ("op", fmt)
            elif kw == "label":
                if len(args) < 2 or not any(o.name == args[0] for o in w.ops):
                    self.fail("label NAME TEXT, NAME a declared op")
                w.op(args[0]).label = code.split(None, 2)[2].strip()
            elif kw == "alias":
                if len(args) != 2 or not any(o.name == args[1] for o in w.ops):
                    self.fail("alias OLD NEW, NEW a declared op")
                w.aliases.append((args[0], args[1]))
            elif kw == "sstats":
                if args[:1] == ["magic"] and len(args) == 3:
                    w.sstats_magic, w.sstats_tag = self.value(args[1]), args[2]
                elif args[:1] == ["env"] and len(args) == 2:
                    w.sstats_env = args[1]
                elif args[:1] == ["field"] and len(args) == 2:
                    w.sstats_fields.append(Field("u64", args[1], doc=doc))
                else:
                    self.fail("sstats magic HEX TAG | sstats env NAME | sstats field NAME")
            elif kw == "trailer":
                if len(args) != 2:
                    self.fail("trailer VERSION TAG")
                t = (args[1], doc, [])
                w.trailers[args[0]] = t
                block = ("trailer", t)
            else:
                self.fail(f"unknown keyword {kw!r}")
        self.check()
        return w

    def enum(self, lst, name, expr, doc) -> Enum:
        if any(e.name == name for e in lst):
            self.fail(f"{name} declared twice")
        return Enum(name, self.value(expr), expr.strip(), doc)

    def block_line(self, block, code, doc):
        kind, obj = block
        if kind == "op":
            m = re.fullmatch(r"(request|reply):\s*(.+)", code)
            if not m:
                self.fail(f"op {obj.name}: expected 'request: FIELDS' or 'reply: FIELDS'")
            fl = self.fields(m.group(2), obj.request if m.group(1) == "reply" else None)
            if obj.id and any(f.type == "raw" or any(i.type == "raw" for i in f.items) for f in fl):
                self.fail(f"op {obj.name}: raw cuda.h types only in formats (wire_protocol.h knows no cuda.h)")
            if getattr(obj, m.group(1)):
                self.fail(f"op {obj.name}: {m.group(1)} declared twice")
            setattr(obj, m.group(1), fl)
            return
        f = self.field(code)
        f.doc = doc
        if not f.scalar:
            self.fail(f"{kind} fields are fixed-size: {code!r}")
        (obj.fields if kind == "struct" else obj[2]).append(f)

    def check(self):
        w = self.wire
        consts = w.int_consts()
        self.lineno = "end"
        for s in w.structs.values():
            got = sum(f.size(consts) for f in s.fields)
            if got != s.size:
                self.fail(f"struct {s.name} says {s.size} bytes, its fields add up to {got}")
        for need in ("PROTO_VERSION", "HELLO_MAGIC", "MAX_PAYLOAD"):
            if need not in w.consts:
                self.fail(f"const {need} is missing")
        if not w.sstats_env or not w.sstats_magic or not w.sstats_fields:
            self.fail("the session-stats block needs magic, env and fields")


def parse(path: str) -> Wire:
    return _Parser(path).parse()
