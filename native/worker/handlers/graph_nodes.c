/* Kernel nodes of graphs: their arguments travel packed, as a launch's do,
 * and are turned back into kernelParams (launch.c) before the driver sees them.
 *
 * Formats: KERNEL_NODE_PARAMS (the node's parameters), GRAPH_ADD_KERNEL_NODE,
 * KERNEL_NODE_SET_PARAMS, EXEC_KERNEL_NODE_SET_PARAMS and
 * KERNEL_NODE_GET_PARAMS in codegen/protocol.txt; GetParams packs what the
 * driver's kernelParams (or its `extra` buffer) point at. The v1 entry points
 * use the same formats (kernel and context 0) and reach the driver's v1
 * functions, whose struct is the v2 one less its last two fields. */
#include <string.h>

#include "handlers.h"

#define MAX_PARAMS (GW_MAX_PARAM_BYTES / 4)
#define EXTRA_MAX 64 /* entries read from an `extra` array the driver returns */

typedef struct node_params {
    CUDA_KERNEL_NODE_PARAMS p;
    void *f;        /* whose layout the bytes follow */
    int is_kernel;
    const uint8_t *bytes;
    uint32_t nbytes;
} node_params;

/* KERNEL_NODE_PARAMS (codegen/protocol.txt) */
static void read_params(gw_call *c, node_params *a)
{
    memset(a, 0, sizeof *a);
    gw_kernel_node_params_req q;
    if (!gw_in_part(c, gw_kernel_node_params_req, &q))
        return;
    int is_kernel;
    a->p.func = (CUfunction)gw_function_of(c, q.function, &is_kernel);
    a->p.kern = (CUkernel)gw_handle_lookup(c, GW_HT_CUkernel, q.kernel);
    a->p.ctx = (CUcontext)gw_handle_lookup(c, GW_HT_CUcontext, q.context);
    a->p.gridDimX = q.dims[0];
    a->p.gridDimY = q.dims[1];
    a->p.gridDimZ = q.dims[2];
    a->p.blockDimX = q.dims[3];
    a->p.blockDimY = q.dims[4];
    a->p.blockDimZ = q.dims[5];
    a->p.sharedMemBytes = q.dims[6];
    a->nbytes = q.param_bytes;
    if (a->nbytes > GW_KERNEL_NODE_PARAMS_REQ_PARAMS_MAX)
        gw_call_fail(c, "%s: %u parameter bytes", gw_op_name(c->h.op), a->nbytes);
    a->bytes = c->bad ? NULL : gw_in_view(c, a->nbytes);
    a->f = a->p.func ? (void *)a->p.func : (void *)a->p.kern;
    a->is_kernel = a->p.func ? is_kernel : 1;
}

/* kernelParams from the packed bytes; 0, or -1 after answering. */
static int build(gw_call *c, node_params *a)
{
    if (!a->f) {
        gw_reply_result(c, CUDA_ERROR_INVALID_VALUE);
        return -1;
    }
    void **kp;
    CUresult r = gw_kernel_params(c, a->f, a->is_kernel, a->bytes, a->nbytes, &kp);
    if (r != CUDA_SUCCESS) {
        gw_reply_result(c, r);
        return -1;
    }
    a->p.kernelParams = kp;
    a->p.extra = NULL;
    return 0;
}

CUgraphNode *gw_in_dependencies(gw_call *c, uint32_t *m_out, const char *noun)
{
    gw_dependencies_req q = {0};
    *m_out = 0;
    if (!gw_in_part(c, gw_dependencies_req, &q))
        return NULL;
    uint32_t m = q.m;
    if (m > gw_in_left(c) / GW_DEPENDENCIES_REQ_NODES_ITEM_SIZE)
        gw_call_fail(c, "%s: %u %s in a request of %zu bytes", gw_op_name(c->h.op), m, noun, c->len);
    CUgraphNode *deps = NULL;
    if (!c->bad && m && !(deps = gw_scratch(c, m * sizeof *deps)))
        gw_call_fail(c, "%s: out of memory for %u %s", gw_op_name(c->h.op), m, noun);
    for (uint32_t i = 0; deps && !c->bad && i < m; i++) {
        gw_dependencies_req_nodes_item d = {0};
        if (gw_in_part(c, gw_dependencies_req_nodes_item, &d))
            deps[i] = (CUgraphNode)gw_handle_lookup(c, GW_HT_CUgraphNode, d.node);
    }
    if (!c->bad)
        *m_out = m;
    return c->bad ? NULL : deps;
}

/* GRAPH_ADD_KERNEL_NODE */
static void add_node(gw_call *c)
{
    gw_graph_add_kernel_node_req q = {0};
    CUgraph g = NULL;
    if (gw_in_part(c, gw_graph_add_kernel_node_req, &q))
        g = (CUgraph)gw_handle_lookup(c, GW_HT_CUgraph, q.graph);
    uint32_t m;
    CUgraphNode *deps = gw_in_dependencies(c, &m, "dependencies");
    node_params a;
    read_params(c, &a);
    if (!gw_args_ok(c) || build(c, &a))
        return;
    CUresult (*fn)(CUgraphNode *, CUgraph, const CUgraphNode *, size_t, const CUDA_KERNEL_NODE_PARAMS *) =
        (CUresult(*)(CUgraphNode *, CUgraph, const CUgraphNode *, size_t, const CUDA_KERNEL_NODE_PARAMS *))
            gw_driver_fn(c, c->h.op);
    if (!fn)
        return;
    CUgraphNode node = NULL;
    CUresult r = fn(&node, g, deps, m, &a.p);
    if (r == CUDA_SUCCESS)
        gw_reply_first(c, gw_graph_add_kernel_node_rep, {.result = r, .node = gw_handle_id(GW_HT_CUgraphNode, node)});
    else
        gw_reply_result(c, r);
}

/* KERNEL_NODE_SET_PARAMS, EXEC_KERNEL_NODE_SET_PARAMS */
static void set_params(gw_call *c, int exec)
{
    CUgraphExec e = NULL;
    CUgraphNode node = NULL;
    if (exec) {
        gw_exec_kernel_node_set_params_req q = {0};
        if (gw_in_part(c, gw_exec_kernel_node_set_params_req, &q)) {
            e = (CUgraphExec)gw_handle_lookup(c, GW_HT_CUgraphExec, q.exec);
            node = (CUgraphNode)gw_handle_lookup(c, GW_HT_CUgraphNode, q.node);
        }
    } else {
        gw_kernel_node_set_params_req q = {0};
        if (gw_in_part(c, gw_kernel_node_set_params_req, &q))
            node = (CUgraphNode)gw_handle_lookup(c, GW_HT_CUgraphNode, q.node);
    }
    node_params a;
    read_params(c, &a);
    if (!gw_args_ok(c) || build(c, &a))
        return;
    void *fn = gw_driver_fn(c, c->h.op);
    if (!fn)
        return;
    CUresult r;
    if (exec)
        r = ((CUresult(*)(CUgraphExec, CUgraphNode, const CUDA_KERNEL_NODE_PARAMS *))fn)(e, node, &a.p);
    else
        r = ((CUresult(*)(CUgraphNode, const CUDA_KERNEL_NODE_PARAMS *))fn)(node, &a.p);
    gw_reply_result(c, r);
}

/* The parameter buffer behind an `extra` array: its bytes and size, or NULL. */
static const void *extra_buffer(void **extra, size_t *size)
{
    const void *buf = NULL;
    const size_t *sz = NULL;
    for (int i = 0; i < EXTRA_MAX; i += 2) {
        if (extra[i] == CU_LAUNCH_PARAM_END) {
            if (!buf || !sz)
                return NULL;
            *size = *sz;
            return buf;
        }
        if (extra[i] == CU_LAUNCH_PARAM_BUFFER_POINTER)
            buf = extra[i + 1];
        else if (extra[i] == CU_LAUNCH_PARAM_BUFFER_SIZE)
            sz = extra[i + 1];
        else
            return NULL;
    }
    return NULL;
}

/* KERNEL_NODE_GET_PARAMS */
static void get_params(gw_call *c)
{
    gw_kernel_node_get_params_req q = {0};
    CUgraphNode node = NULL;
    if (gw_in_part(c, gw_kernel_node_get_params_req, &q))
        node = (CUgraphNode)gw_handle_lookup(c, GW_HT_CUgraphNode, q.node);
    if (!gw_args_ok(c))
        return;
    CUresult (*fn)(CUgraphNode, CUDA_KERNEL_NODE_PARAMS *) =
        (CUresult(*)(CUgraphNode, CUDA_KERNEL_NODE_PARAMS *))gw_driver_fn(c, c->h.op);
    if (!fn)
        return;
    CUDA_KERNEL_NODE_PARAMS p;
    memset(&p, 0, sizeof p); /* the v1 function fills all but kern and ctx */
    CUresult r = fn(node, &p);
    if (r != CUDA_SUCCESS) {
        gw_reply_result(c, r);
        return;
    }
    /* the function the node runs, named as the client knows it: a kernel
     * handed over as the function keeps its kernel id */
    int func_is_kernel = p.func && (void *)p.func == (void *)p.kern;
    void *f = p.func ? (void *)p.func : (void *)p.kern;
    int is_kernel = p.func ? func_is_kernel : 1;
    /* per call, not thread-local: a thread's static TLS comes out of its (small) stack */
    uint32_t *offs = gw_scratch(c, MAX_PARAMS * sizeof *offs), *sizes = gw_scratch(c, MAX_PARAMS * sizeof *sizes);
    uint8_t *buf = gw_scratch(c, GW_MAX_PARAM_BYTES);
    if (!offs || !sizes || !buf) {
        gw_reply_result(c, CUDA_ERROR_OUT_OF_MEMORY);
        return;
    }
    uint32_t n = 0, end = 0;
    if (!f || gw_param_layout(f, is_kernel, offs, sizes, &n, &end) || end > GW_MAX_PARAM_BYTES) {
        gw_wlog("%s: the node's function has no parameter layout the driver reports", gw_op_name(c->h.op));
        gw_reply_result(c, CUDA_ERROR_NOT_SUPPORTED);
        return;
    }
    if (p.kernelParams) {
        for (uint32_t i = 0; i < n; i++) {
            if (!p.kernelParams[i]) {
                gw_wlog("%s: the driver returned no pointer for parameter %u", gw_op_name(c->h.op), i);
                gw_reply_result(c, CUDA_ERROR_NOT_SUPPORTED);
                return;
            }
            memcpy(buf + offs[i], p.kernelParams[i], sizes[i]);
        }
    } else if (n) {
        size_t size = 0;
        const void *eb = p.extra ? extra_buffer(p.extra, &size) : NULL;
        if (!eb || size < end) {
            gw_wlog("%s: the driver returned neither kernelParams nor a parameter buffer", gw_op_name(c->h.op));
            gw_reply_result(c, CUDA_ERROR_NOT_SUPPORTED);
            return;
        }
        memcpy(buf, eb, end);
    }
    uint64_t ids[3] = {func_is_kernel ? gw_handle_id(GW_HT_CUkernel, p.kern) : gw_handle_id(GW_HT_CUfunction, p.func),
                       gw_handle_id(GW_HT_CUkernel, p.kern), gw_handle_id(GW_HT_CUcontext, p.ctx)};
    gw_reply_first(c, gw_kernel_node_get_params_rep,
                   {.result = CUDA_SUCCESS, .function = ids[0], .kernel = ids[1], .context = ids[2],
                    .dims = {p.gridDimX, p.gridDimY, p.gridDimZ, p.blockDimX, p.blockDimY, p.blockDimZ,
                             p.sharedMemBytes},
                    .n = n});
    for (uint32_t i = 0; i < n; i++) /* n <= GW_KERNEL_NODE_GET_PARAMS_REP_LAYOUT_MAX: gw_param_layout's bound */
        gw_reply_fields(c, gw_kernel_node_get_params_rep_layout_item, {.offset = offs[i], .size = sizes[i]});
    gw_reply_fields(c, gw_kernel_node_get_params_rep_after_layout, {.param_bytes = end});
    gw_reply_bytes(c, buf, end);
}

void gw_h_cuGraphAddKernelNode(gw_call *c) { add_node(c); }
void gw_h_cuGraphAddKernelNode_v2(gw_call *c) { add_node(c); }
void gw_h_cuGraphKernelNodeGetParams(gw_call *c) { get_params(c); }
void gw_h_cuGraphKernelNodeGetParams_v2(gw_call *c) { get_params(c); }
void gw_h_cuGraphKernelNodeSetParams(gw_call *c) { set_params(c, 0); }
void gw_h_cuGraphKernelNodeSetParams_v2(gw_call *c) { set_params(c, 0); }
void gw_h_cuGraphExecKernelNodeSetParams(gw_call *c) { set_params(c, 1); }
void gw_h_cuGraphExecKernelNodeSetParams_v2(gw_call *c) { set_params(c, 1); }
