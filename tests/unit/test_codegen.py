"""The generated sources are committed and must match a fresh generator run,
and the client's cuGetProcAddress must honour versions, flags and the
symbol-status out-parameter (it is answered in the client: no server needed);
the wire's declaration (codegen/protocol.txt) parses, refuses mistakes, and
its generated property table and doc tables agree with it."""

import ctypes
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

LIB = ROOT / "src" / "gpuwire" / "_native" / "libcuda.so.1"


def test_generated_sources_are_current():
    r = subprocess.run([sys.executable, str(ROOT / "codegen" / "gen.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture(scope="module")
def cuda():
    if not LIB.exists():
        pytest.skip("the client library is not built (run scripts/setup)")
    return ctypes.CDLL(str(LIB))


def proc(cuda, name, version, flags=0):
    fn = ctypes.c_void_p()
    status = ctypes.c_int(-1)
    rc = cuda.cuGetProcAddress_v2(name.encode(), ctypes.byref(fn), version, ctypes.c_uint64(flags),
                                  ctypes.byref(status))
    return rc, fn.value, status.value


def addr(cuda, symbol):
    return ctypes.cast(getattr(cuda, symbol), ctypes.c_void_p).value


@pytest.mark.parametrize("name,version,flags,symbol", [
    ("cuMemAlloc", 13000, 0, "cuMemAlloc_v2"),
    ("cuMemAlloc", 3020, 0, "cuMemAlloc_v2"),
    ("cuMemAlloc", 2000, 0, "cuMemAlloc"),
    ("cuMemcpyHtoDAsync", 13000, 0, "cuMemcpyHtoDAsync_v2"),
    ("cuMemcpyHtoDAsync", 13000, 2, "cuMemcpyHtoDAsync_v2_ptsz"),
    ("cuStreamSynchronize", 13000, 2, "cuStreamSynchronize_ptsz"),
    ("cuCtxCreate", 13000, 0, "cuCtxCreate_v4"),
    ("cuGetProcAddress", 13000, 0, "cuGetProcAddress_v2"),
    ("cuGetExportTable", 13000, 0, "cuGetExportTable"),
])
def test_proc_address_picks_the_version_asked_for(cuda, name, version, flags, symbol):
    rc, fn, status = proc(cuda, name, version, flags)
    assert (rc, status) == (0, 0)
    assert fn == addr(cuda, symbol)


def test_proc_address_reports_why_not(cuda):
    rc, fn, status = proc(cuda, "cuMemAlloc", 1000)
    assert rc == 500 and fn is None and status == 2  # CUDA_ERROR_NOT_FOUND, VERSION_NOT_SUFFICIENT
    rc, fn, status = proc(cuda, "cuNoSuchFunction", 13000)
    assert rc == 500 and fn is None and status == 1  # SYMBOL_NOT_FOUND
    rc, fn, status = proc(cuda, "", 0)
    assert rc == 500 and status == 1


def test_every_driver_symbol_is_exported(cuda):
    missing = [s for s in (ROOT / "codegen" / "driver_symbols.txt").read_text().split() if not hasattr(cuda, s)]
    assert not missing, missing[:20]


def test_unforwarded_function_is_not_supported(cuda):
    # cuGraphAddExternalSemaphoresSignalNode is exported but not remoted yet: a clear error, never a silent success
    assert cuda.cuGraphAddExternalSemaphoresSignalNode(None, None, None, 0, None) == 801  # CUDA_ERROR_NOT_SUPPORTED


# --- the wire's declaration (codegen/protocol.txt) and its generator ---------------

sys.path.insert(0, str(ROOT / "codegen"))
import annotations as ann_mod  # noqa: E402
import wire_decl  # noqa: E402

DECL_PATH = ROOT / "codegen" / "protocol.txt"


def test_declaration_parses():
    w = wire_decl.parse(str(DECL_PATH))
    assert [o.id for o in w.ops] == sorted(o.id for o in w.ops) and len(w.ops) == 29
    assert w.op("DELIVER").id == 21 and "posted" in w.op("DELIVER").props
    assert {s: w.structs[s].size for s in w.structs} == {"hdr": 16, "hello": 24, "hello_ok": 80, "lane_grant": 24,
                                                          "device_info": 344,
                                                          "lane_hello": 32}


@pytest.mark.parametrize("line, words", [
    ("op BOGUS 1 c>w", "name or id declared twice"),
    ("op BOGUS 300 c>w", "control op ids are 1..255"),
    ("op BOGUS 99 up", "unknown direction or property 'up'"),
    ("op BOGUS 99 c>w\n    request: u64 a, bytes b, u32 c", "must come last"),
    ("op BOGUS 99 c>w\n    request: u48 a", "unknown type 'u48'"),
    ("struct bogus 12 BOGUS\n    u32 a\n    u32 b", "says 12 bytes, its fields add up to 8"),
    ("const BOGUS u32 __import__('os')", "bad value"),
    ("ext BOGUS 99 blob x", "unknown codec 'blob'"),
    ("frobnicate 1", "unknown keyword 'frobnicate'"),
    ("    u32 stray", "indented line outside"),
    ("format BOGUS\n    request: u32 n, list[n<=NOPE]:(u32 a) xs", "unknown limit 'NOPE'"),
    ("format BOGUS\n    request: list[k]:(u32 a) xs", "'k' is not an earlier integer field"),
    ("format BOGUS\n    request: u32 f, opt[g]:(u32 a) x", "'g' is not an earlier integer field"),
    ("format BOGUS\n    request: u32 n, list[n<=8]:(u32 a)", "a list with a maximum is named"),
    ("format BOGUS\n    request: u32 n, list[n]:(str s) x", "items must be fixed-size"),
    ("format BOGUS\n    request: fmt:NOPE x", "unknown format 'NOPE'"),
    ("format BOGUS\n    request: raw:int x", "is not a cuda.h type"),
    ("format BOGUS\n    request: u32 n, bytes[n<=NOPE] b", "unknown limit 'NOPE'"),
    ("format BOGUS\n    request: u32 n\n    reply: i32 result, list[request.m]:(u32 a) xs", "'m' is not an earlier"),
    ("op BOGUS 99 c>w\n    request: raw:CUDA_MEMCPY3D m", "raw cuda.h types only in formats"),
])
def test_malformed_declaration_is_refused_with_file_and_line(tmp_path, line, words):
    bad = tmp_path / "protocol.txt"
    text = DECL_PATH.read_text() + "\n" + line + "\n"
    bad.write_text(text)
    with pytest.raises(SystemExit) as e:
        wire_decl.parse(str(bad))
    msg = str(e.value)
    assert msg.startswith(f"{bad}:") and words in msg, msg


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")
def test_property_table_agrees_with_the_annotations(tmp_path):
    """native/generated/wire_props.h, compiled, says of every op what
    codegen/protocol.txt and codegen/annotations.txt say."""
    ann_mod.parse(str(ROOT / "codegen" / "annotations.txt"))
    props = ann_mod.PROPS
    w = wire_decl.parse(str(DECL_PATH))
    symbols = sorted({s.strip() for s in (ROOT / "codegen" / "driver_symbols.txt").read_text().split() if s.strip()})
    src = tmp_path / "props.c"
    src.write_text(f'#include <stdio.h>\n#include "{ROOT / "native" / "generated" / "wire_props.h"}"\n'
                   "int main(void) {\n    for (unsigned op = 0; op < 256 + GW_OP_COUNT; op++)\n"
                   '        printf("%u %d %d %d %d %d %d %s\\n", op, gw_op_is_control(op), gw_op_needs_cas(op), '
                   "gw_op_only_waits(op), gw_op_copy_dir(op), gw_op_may_post(op), gw_op_per_thread(op), "
                   'gw_control_op_label(op) ? gw_control_op_label(op) : "-");\n    return 0;\n}\n')
    exe = tmp_path / "props"
    subprocess.run(["gcc", "-std=gnu11", "-Wall", "-Werror", str(src), "-o", str(exe)], check=True)
    rows = {}
    for line in subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.splitlines():
        op, *vals, label = line.split(" ", 7)
        rows[int(op)] = [int(v) for v in vals] + [label]
    ids = {s: 256 + i for i, s in enumerate(symbols)}
    control = {o.id for o in w.ops if "control" in o.props}
    assert {op for op, v in rows.items() if v[0]} == control == {6, 7, 16, 18, 19, 21, 23, 24, 25, 26, 28, 29, 30, 32}
    assert {op for op, v in rows.items() if v[1]} == {18, 19}
    assert {op for op, v in rows.items() if v[2]} == {ids[s] for s in props["only_waits"] | props["dtoh"]}
    assert {op for op, v in rows.items() if v[3] == 1} == {ids[s] for s in props["htod"]}
    assert {op for op, v in rows.items() if v[3] == 2} == {ids[s] for s in props["dtoh"]}
    posted = {ids[s] for s in ann_mod.ASYNC | props["posted"] | props["htod"]}
    assert posted <= {op for op, v in rows.items() if v[4]}
    assert {7, 19, 21} <= {op for op, v in rows.items() if v[4]}
    assert props["only_waits"] >= {"cuCtxSynchronize", "cuStreamSynchronize", "cuEventSynchronize"}
    assert {op for op, v in rows.items() if v[5]} == {i for s, i in ids.items() if s.endswith(("_ptsz", "_ptds"))}
    assert rows[6][6] == "(parameter layout)" and rows[18][6] == "(cache references)" and rows[ids["cuInit"]][6] == "-"


def test_protocol_doc_tables_come_from_the_declaration():
    import gen_wire
    w = wire_decl.parse(str(DECL_PATH))
    doc = (ROOT / "docs" / "protocol.md").read_text()
    assert gen_wire.doc_tables(w) in doc  # gen.py --check fails too when they differ
    for op in w.ops:
        assert f"| `{op.name}` | {op.id} |" in doc


def test_new_field_kinds_parse_as_declared():
    w = wire_decl.parse(str(DECL_PATH))
    fmt = {f.name: f for f in w.formats}
    cfg = fmt["LAUNCH_CONFIG"].request
    attrs = cfg[-1]
    assert (attrs.type, attrs.count, attrs.max, attrs.items[0].type, attrs.items[0].struct) == \
        ("list", "attr_count", "LAUNCH_ATTRS_MAX", "raw", "CUlaunchAttribute")
    view = fmt["TEX_OBJECT_CREATE"].request[-1]
    assert (view.type, view.cond) == ("opt", ("has_view", "!=", "0"))
    side = fmt["MEMCPY_BAND_SIDE"].request
    assert [f.cond for f in side[1:]] == [("memory_type", "==", "MEMORYTYPE_ARRAY"),
                                         ("memory_type", "!=", "MEMORYTYPE_ARRAY")]
    assert [f.type for f in fmt["LINK_ADD"].request] == ["u64", "u32", "u64", "str", "fmt"]
    assert fmt["POINTER_ATTRIBUTES"].reply[-1].count == "request.n"
    params = fmt["KERNEL_NODE_PARAMS"].request[-1]
    assert (params.type, params.count, params.max) == ("bytes", "param_bytes", "MAX_PARAM_BYTES")


CUDA_INCLUDE = next((p for p in ("/usr/local/cuda/include", "/usr/include") if Path(p, "cuda.h").exists()), None)


@pytest.mark.skipif(shutil.which("gcc") is None or CUDA_INCLUDE is None, reason="gcc or cuda.h missing")
def test_generated_format_codecs_check_sizes_and_maxima(tmp_path):
    """The codecs of native/generated/wire_formats.h: a raw cuda.h struct is
    sizeof() bytes, a list over its declared maximum or cut short is refused,
    an optional part and the fixed fields after a list round-trip."""
    src = tmp_path / "formats.c"
    src.write_text(f"""#include <stdio.h>
#include "{ROOT / 'native' / 'generated' / 'wire_formats.h'}"
int main(void) {{
    uint8_t b[4096];
    gw_launch_config_req_attrs_item it[GW_LAUNCH_ATTRS_MAX + 1];
    memset(it, 0, sizeof it);
    it[1].attr.id = CU_LAUNCH_ATTRIBUTE_COOPERATIVE;
    size_t n = gw_launch_config_req_attrs_put(b, 2, it);
    gw_launch_config_req_attrs_item back[GW_LAUNCH_ATTRS_MAX];
    if (n != 2 * sizeof(CUlaunchAttribute) || !gw_launch_config_req_attrs_get(b, n, 2, back) ||
        back[1].attr.id != CU_LAUNCH_ATTRIBUTE_COOPERATIVE)
        return 1;
    if (gw_launch_config_req_attrs_get(b, n - 1, 2, back) || gw_launch_config_req_attrs_get(b, sizeof b, 33, back))
        return 2;
    if (GW_TEX_OBJECT_CREATE_REQ_SIZE != 4 + sizeof(CUDA_RESOURCE_DESC) + sizeof(CUDA_TEXTURE_DESC) ||
        GW_TEX_OBJECT_CREATE_REQ_VIEW_SIZE != sizeof(CUDA_RESOURCE_VIEW_DESC))
        return 3;
    gw_graph_add_mem_alloc_node_req_after_deps a = {{.k = 3}}, ab;
    a.params.bytesize = 1 << 20;
    n = gw_graph_add_mem_alloc_node_req_after_deps_put(b, &a);
    if (n != 4 + sizeof(CUDA_MEM_ALLOC_NODE_PARAMS) || gw_graph_add_mem_alloc_node_req_after_deps_get(b, n, &ab) != n ||
        ab.k != 3 || ab.params.bytesize != 1 << 20 || gw_graph_add_mem_alloc_node_req_after_deps_get(b, n - 1, &ab))
        return 4;
    gw_graph_add_mem_alloc_node_req_access_item acc[GW_ACCESS_DESCS_MAX + 1];
    if (gw_graph_add_mem_alloc_node_req_access_get(b, sizeof b, GW_ACCESS_DESCS_MAX + 1, acc))
        return 5;
    /* field by field, for a decoder's message on a cut request */
    if (gw_tex_object_create_req_field_size(0) != sizeof(CUDA_RESOURCE_DESC) ||
        gw_tex_object_create_req_field_size(2) != 4 || gw_tex_object_create_req_field_size(3) != 0)
        return 6;
    printf("%d %d\\n", GW_LAUNCH_CONFIG_REQ_SIZE, GW_KERNEL_NODE_PARAMS_REQ_SIZE);
    return 0;
}}
""")
    exe = tmp_path / "formats"
    subprocess.run(["gcc", "-std=gnu11", "-Wall", "-Werror", f"-I{CUDA_INCLUDE}", str(src), "-o", str(exe)], check=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True)
    assert out.returncode == 0, out.returncode
    # u64 function, u32 grid[3] block[3] shared, u64 stream, u32 attr_count; u64 x3, u32 x7, u32 param_bytes
    assert out.stdout.split() == ["48", "56"]
