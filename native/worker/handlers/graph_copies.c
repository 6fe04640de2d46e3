/* Memcpy nodes of graphs: device memory on both sides (the client's mapped
 * host memory is device memory here: same address), or, for a new node, a
 * device source and a destination in the client's own memory, named by a
 * delivery id in dstHost (never dereferenced): the node copies into staging
 * and a host node after it delivers the bytes (deliveries.c); or a one-row
 * source in the client's memory, named by a staging id in srcHost (never
 * dereferenced): the node copies from device staging the client fills before
 * each launch (graph_sources.c). Any other host side is refused: a host
 * address from the network would have the driver read or write the worker.
 *
 * New parameters (MEMCPY_NODE_SET_PARAMS, EXEC_MEMCPY_NODE_SET_PARAMS) may
 * name a host source too.
 *
 * Formats: GRAPH_ADD_MEMCPY_NODE, MEMCPY_NODE_SET_PARAMS and
 * EXEC_MEMCPY_NODE_SET_PARAMS in codegen/protocol.txt (host and array fields
 * ignored). cuGraphMemcpyNodeGetParams is generated (the struct comes back as
 * it is). */
#include <string.h>

#include "handlers.h"

/* Once the whole request is read: 0 if both sides are device memory (the
 * host and array fields cleared), else -1 after answering. */
static int device_only(gw_call *c, CUDA_MEMCPY3D *p)
{
    if (p->srcMemoryType != CU_MEMORYTYPE_DEVICE || p->dstMemoryType != CU_MEMORYTYPE_DEVICE) {
        gw_wlog("%s: refused a memcpy node whose sides are not both device memory", gw_op_name(c->h.op));
        gw_reply_result(c, CUDA_ERROR_NOT_SUPPORTED);
        return -1;
    }
    p->srcHost = NULL;
    p->dstHost = NULL;
    p->srcArray = p->dstArray = NULL;
    return 0;
}

/* A source in the client's memory (srcHost a staging id, one row to the
 * device): made the device staging of that id, filled before each launch
 * (graph_sources.c); *id the staging's id, 0 for any other source. 0, or -1
 * once the call is answered or failed (a malformed id ends the session). */
static int host_source(gw_call *c, CUDA_MEMCPY3D *p, CUcontext ctx, uint64_t *id)
{
    *id = 0;
    if (p->srcMemoryType != CU_MEMORYTYPE_HOST || p->dstMemoryType != CU_MEMORYTYPE_DEVICE)
        return 0;
    if (p->Height != 1 || p->Depth != 1 || !p->WidthInBytes) {
        gw_wlog("%s: a memcpy node from the client's memory must copy one row (%zu x %zu x %zu)",
                gw_op_name(c->h.op), p->WidthInBytes, p->Height, p->Depth);
        gw_reply_result(c, CUDA_ERROR_NOT_SUPPORTED);
        return -1;
    }
    CUdeviceptr from = 0;
    CUresult r = gw_graph_source_staging(c, (uint64_t)(uintptr_t)p->srcHost, p->WidthInBytes, ctx, &from);
    if (c->bad)
        return -1; /* malformed: the session ends */
    if (r != CUDA_SUCCESS) {
        gw_reply_result(c, r);
        return -1;
    }
    *id = (uint64_t)(uintptr_t)p->srcHost;
    p->srcMemoryType = CU_MEMORYTYPE_DEVICE;
    p->srcDevice = from;
    p->srcHost = NULL;
    p->srcXInBytes = p->srcY = p->srcZ = 0;
    p->srcPitch = p->WidthInBytes;
    p->srcHeight = 1;
    return 0;
}

/* GRAPH_ADD_MEMCPY_NODE (codegen/protocol.txt) */
void gw_h_cuGraphAddMemcpyNode(gw_call *c)
{
    gw_graph_add_memcpy_node_req q = {0};
    CUgraph g = NULL;
    if (gw_in_part(c, gw_graph_add_memcpy_node_req, &q))
        g = (CUgraph)gw_handle_lookup(c, GW_HT_CUgraph, q.graph);
    uint32_t m;
    CUgraphNode *deps = gw_in_dependencies(c, &m, "handles");
    gw_graph_add_memcpy_node_req_after_deps a;
    memset(&a, 0, sizeof a);
    CUcontext ctx = NULL;
    if (gw_in_part(c, gw_graph_add_memcpy_node_req_after_deps, &a))
        ctx = (CUcontext)gw_handle_lookup(c, GW_HT_CUcontext, a.context);
    CUDA_MEMCPY3D p = a.copy;
    if (!gw_args_ok(c))
        return;
    uint64_t source = 0; /* from the client's memory: its staging id */
    if (host_source(c, &p, ctx, &source))
        return;
    /* into the client's memory: a contiguous run from device memory, delivered */
    uint64_t delivery = 0;
    void *staging = NULL;
    if (p.dstMemoryType == CU_MEMORYTYPE_HOST && p.srcMemoryType == CU_MEMORYTYPE_DEVICE) {
        delivery = (uint64_t)(uintptr_t)p.dstHost;
        if (!delivery || p.Height != 1 || p.Depth != 1 || !p.WidthInBytes) {
            gw_wlog("%s: a delivered memcpy node must copy one row (%zu x %zu x %zu)", gw_op_name(c->h.op),
                    p.WidthInBytes, p.Height, p.Depth);
            gw_reply_result(c, CUDA_ERROR_NOT_SUPPORTED);
            return;
        }
        staging = gw_delivery_staging(p.WidthInBytes);
        if (!staging) {
            gw_reply_result(c, CUDA_ERROR_OUT_OF_MEMORY);
            return;
        }
        p.dstMemoryType = CU_MEMORYTYPE_DEVICE; /* cleared below; set to the staging after */
    }
    if (device_only(c, &p)) {
        if (staging)
            gw_delivery_staging_unused(staging, p.WidthInBytes);
        return;
    }
    if (delivery) {
        p.dstMemoryType = CU_MEMORYTYPE_HOST;
        p.dstHost = staging;
        p.dstDevice = 0;
        p.dstXInBytes = p.dstY = p.dstZ = 0;
        p.dstPitch = p.WidthInBytes;
        p.dstHeight = 1;
    }
    CUresult (*fn)(CUgraphNode *, CUgraph, const CUgraphNode *, size_t, const CUDA_MEMCPY3D *, CUcontext) =
        (CUresult(*)(CUgraphNode *, CUgraph, const CUgraphNode *, size_t, const CUDA_MEMCPY3D *, CUcontext))
            gw_driver_fn(c, c->h.op);
    if (!fn) {
        if (staging)
            gw_delivery_staging_unused(staging, p.WidthInBytes);
        if (source)
            gw_graph_source_unused(source);
        return;
    }
    CUgraphNode node = NULL;
    CUresult r = fn(&node, g, deps, m, &p, ctx);
    if (r != CUDA_SUCCESS && staging)
        gw_delivery_staging_unused(staging, p.WidthInBytes);
    if (r != CUDA_SUCCESS && source)
        gw_graph_source_unused(source);
    if (r == CUDA_SUCCESS && delivery)
        r = gw_delivery_node(g, node, delivery, staging, p.WidthInBytes);
    if (r == CUDA_SUCCESS)
        gw_reply_first(c, gw_graph_add_memcpy_node_rep, {.result = r, .node = gw_handle_id(GW_HT_CUgraphNode, node)});
    else
        gw_reply_result(c, r);
}

/* MEMCPY_NODE_SET_PARAMS */
void gw_h_cuGraphMemcpyNodeSetParams(gw_call *c)
{
    gw_memcpy_node_set_params_req q;
    memset(&q, 0, sizeof q);
    CUgraphNode node = NULL;
    if (gw_in_part(c, gw_memcpy_node_set_params_req, &q))
        node = (CUgraphNode)gw_handle_lookup(c, GW_HT_CUgraphNode, q.node);
    CUDA_MEMCPY3D p = q.copy;
    uint64_t source = 0;
    if (!gw_args_ok(c) || host_source(c, &p, NULL, &source))
        return;
    if (device_only(c, &p)) {
        if (source)
            gw_graph_source_unused(source);
        return;
    }
    CUresult (*fn)(CUgraphNode, const CUDA_MEMCPY3D *) =
        (CUresult(*)(CUgraphNode, const CUDA_MEMCPY3D *))gw_driver_fn(c, c->h.op);
    CUresult r = fn ? fn(node, &p) : CUDA_ERROR_NOT_SUPPORTED;
    if (r != CUDA_SUCCESS && source)
        gw_graph_source_unused(source);
    if (fn)
        gw_reply_result(c, r);
}

/* EXEC_MEMCPY_NODE_SET_PARAMS */
void gw_h_cuGraphExecMemcpyNodeSetParams(gw_call *c)
{
    gw_exec_memcpy_node_set_params_req q;
    memset(&q, 0, sizeof q);
    CUgraphExec e = NULL;
    CUgraphNode node = NULL;
    CUcontext ctx = NULL;
    if (gw_in_part(c, gw_exec_memcpy_node_set_params_req, &q)) {
        e = (CUgraphExec)gw_handle_lookup(c, GW_HT_CUgraphExec, q.exec);
        node = (CUgraphNode)gw_handle_lookup(c, GW_HT_CUgraphNode, q.node);
        ctx = (CUcontext)gw_handle_lookup(c, GW_HT_CUcontext, q.context);
    }
    CUDA_MEMCPY3D p = q.copy;
    uint64_t source = 0;
    if (!gw_args_ok(c) || host_source(c, &p, ctx, &source))
        return;
    if (device_only(c, &p)) {
        if (source)
            gw_graph_source_unused(source);
        return;
    }
    CUresult (*fn)(CUgraphExec, CUgraphNode, const CUDA_MEMCPY3D *, CUcontext) =
        (CUresult(*)(CUgraphExec, CUgraphNode, const CUDA_MEMCPY3D *, CUcontext))gw_driver_fn(c, c->h.op);
    CUresult r = fn ? fn(e, node, &p, ctx) : CUDA_ERROR_NOT_SUPPORTED;
    if (r != CUDA_SUCCESS && source)
        gw_graph_source_unused(source);
    if (fn)
        gw_reply_result(c, r);
}
