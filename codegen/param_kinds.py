"""One class per way a parameter travels: each writes the client's put into
the request and the worker's read out of it (and, for outputs, the reply both
ways), so the two sides of a kind are written in one place. Shared by the
CUDA (gen.py) and NVML (gen_nvml.py) generators; gen.plan_params picks the
kind of each parameter from its type and codegen/annotations.txt.

The wire encodings are docs/protocol.md's "Calls" table.
"""
from __future__ import annotations


def routed(p) -> bool:
    """A driver or NVML handle: it names its server (several servers:
    native/client/wire/servers.h, native/nvml/servers.c)."""
    return p.elem_kind == "handle" and (p.base.startswith("CU") or p.base.startswith("nvml"))


def elem_size_expr(p) -> str:
    if p.elem_kind == "bytes":
        return "1"
    if p.elem_kind == "handle":
        return "8"
    return f"sizeof({p.base})"


class Kind:
    """A parameter kind. worker_read returns (lines declaring the argument,
    the expression passed to the driver, lines run after a successful call)."""
    name = ""

    def client_put(self, p) -> list[str]:
        raise NotImplementedError

    def worker_read(self, p, v: str) -> tuple[list[str], str, list[str]]:
        raise NotImplementedError

    def client_get(self, p) -> list[str]:
        """The client's read of this parameter's output from the reply (outputs only)."""
        return []


class Value(Kind):
    """An integer, enum, handle or float by value: u64 (sign-extended), u64 id, f64."""
    name = "value"

    def client_put(self, p):
        if p.elem_kind == "float":
            return [f"    gw_put_f64(q, (double){p.name});"]
        if routed(p):
            return [f"    gw_put_handle(q, (uint64_t)(uintptr_t){p.name});"]
        if p.elem_kind == "handle":
            return [f"    gw_put_u64(q, (uint64_t)(uintptr_t){p.name});"]
        if p.base == "CUmemGenericAllocationHandle":  # the driver's value: several servers, noted whose
            return [f"    gw_put_allocation_handle(q, (uint64_t){p.name});"]
        if p.base == "CUdevice":  # the client's ordinal: its server's, on that server
            return [f"    gw_put_device(q, (int64_t){p.name});"]
        if p.base == "CUdeviceptr":  # several servers: the memory's server
            return [f"    gw_put_address(q, (uint64_t){p.name});"]
        return [f"    gw_put_u64(q, (uint64_t)(int64_t){p.name});"]

    def worker_read(self, p, v):
        if p.elem_kind == "float":
            return [f"    {p.base} {v} = ({p.base})gw_in_f64(c);"], v, []
        if p.elem_kind == "handle":
            return [f"    {p.base} {v} = ({p.base})gw_in_handle(c, GW_HT_{p.base});"], v, []
        return [f"    {p.base} {v} = ({p.base})gw_in_u64(c);"], v, []


class Addr(Kind):
    """A device address typed as a pointer: travels as a number (several
    servers: to its memory's server, as a CUdeviceptr does)."""
    name = "addr"

    def client_put(self, p):
        return [f"    gw_put_address(q, (uint64_t)(uintptr_t){p.name});"]

    def worker_read(self, p, v):
        return [f"    {p.prm.ctype} {v} = ({p.prm.ctype})(uintptr_t)gw_in_u64(c);"], v, []


class Destroy(Kind):
    """A handle the call destroys: its id is forgotten once the driver agrees."""
    name = "destroy"

    def client_put(self, p):
        if routed(p):
            return [f"    gw_put_handle(q, (uint64_t)(uintptr_t){p.name});"]
        return [f"    gw_put_u64(q, (uint64_t)(uintptr_t){p.name});"]

    def worker_read(self, p, v):
        return ([f"    uint64_t {v}_id = gw_in_u64(c);",
                 f"    {p.base} {v} = ({p.base})gw_handle_lookup(c, GW_HT_{p.base}, {v}_id);"], v,
                [f"    if (res == CUDA_SUCCESS) gw_handle_forget(c, GW_HT_{p.base}, {v}_id);"])


class New(Kind):
    """A handle output the client names itself, so creating it need not wait."""
    name = "new"

    def client_put(self, p):
        n = p.name
        return [f"    if (!{n})", "        return CUDA_ERROR_INVALID_VALUE;",
                f"    uint64_t {n}_id = gw_new_handle_id();", f"    gw_put_handle(q, {n}_id);"]

    def worker_read(self, p, v):
        return ([f"    uint64_t {v}_id = gw_in_u64(c);", f"    {p.base} {v} = NULL;"], f"&{v}",
                [f"    gw_handle_bind(c, GW_HT_{p.base}, {v}_id, {v});"])


class Str(Kind):
    """const char *: u32 length or NULL marker, then the bytes."""
    name = "str"

    def client_put(self, p):
        return [f"    gw_put_str(q, {p.name});"]

    def worker_read(self, p, v):
        return [f"    const char *{v} = gw_in_str(c);"], v, []


class Struct(Kind):
    """A plain struct by value (an opaque IPC handle): its bytes, as an input
    array of exactly one element."""
    name = "struct"

    def client_put(self, p):
        return [f"    gw_put_in(q, &{p.name}, sizeof({p.base}));"]

    def worker_read(self, p, v):
        return ([f"    size_t {v}_n;",
                 f"    {p.base} *{v}_p = ({p.base} *)gw_in_array(c, sizeof({p.base}), &{v}_n);",
                 f"    if (!c->bad && {v}_n != 1)",
                 f"        gw_call_fail(c, \"%s: {p.name} is not one {p.base}\", gw_op_name(c->h.op));",
                 f"    {p.base} {v};",
                 f"    memset(&{v}, 0, sizeof {v});",
                 f"    if ({v}_p && {v}_n == 1)",
                 f"        {v} = *{v}_p;"], v, [])


def _reply_out(p, v) -> str:
    if p.elem_kind == "handle":
        return f"    gw_reply_handles(c, GW_HT_{p.base}, (void **){v}, {v}_n);"
    return f"    gw_reply_bytes(c, {v}, {v}_n * {elem_size_expr(p)});"


def _client_get(p) -> list[str]:
    n = p.name
    if p.elem_kind == "handle":
        return [f"        if ({n}) gw_get_handles(r, (void **){n}, (size_t)({p.count}));"]
    if p.base == "CUmemGenericAllocationHandle":
        return [f"        if ({n}) gw_get_allocation_handles(r, (uint64_t *){n}, (size_t)({p.count}));"]
    return [f"        if ({n}) gw_get_bytes(r, {n}, (size_t)({p.count}) * {elem_size_expr(p)});"]


class In(Kind):
    """An input array: u32 byte length or NULL marker, then the bytes (handles: 8-byte ids)."""
    name = "in"

    def client_put(self, p):
        n = p.name
        if p.elem_kind == "handle":
            return [f"    gw_put_handles(q, (void *const *){n}, {n} ? (size_t)({p.count}) : 0);"]
        return [f"    gw_put_in(q, {n}, {n} ? (size_t)({p.count}) * {elem_size_expr(p)} : 0);"]

    def worker_read(self, p, v):
        L = [f"    size_t {v}_n;"]
        if p.elem_kind == "handle":
            L.append(f"    {p.base} *{v} = ({p.base} *)gw_in_handles(c, GW_HT_{p.base}, &{v}_n);")
        else:
            L.append(f"    {p.base} *{v} = ({p.base} *)gw_in_array(c, {elem_size_expr(p)}, &{v}_n);")
        return L, v, []


class InOut(In):
    """As an input; the reply carries it back."""
    name = "inout"

    def worker_read(self, p, v):
        L, arg, _ = super().worker_read(p, v)
        return L, arg, [_reply_out(p, v)]

    def client_get(self, p):
        return _client_get(p)


class Out(Kind):
    """An output array: u32 element count or NULL marker; the reply carries the elements."""
    name = "out"

    def client_put(self, p):
        return [f"    gw_put_out(q, {p.name}, {p.name} ? (size_t)({p.count}) : 0);"]

    def worker_read(self, p, v):
        esz = "sizeof(void *)" if p.elem_kind == "handle" else elem_size_expr(p)
        return ([f"    size_t {v}_n;", f"    {p.base} *{v} = ({p.base} *)gw_out_array(c, {esz}, &{v}_n);"], v,
                [_reply_out(p, v)])

    def client_get(self, p):
        return _client_get(p)


KINDS: dict[str, Kind] = {k.name: k for k in (Value(), Addr(), Destroy(), New(), Str(), In(), InOut(), Out(),
                                                   Struct())}
