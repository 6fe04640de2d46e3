/* Memcpy nodes of graphs: device memory on both sides only. The client refuses
 * host sides already (the node copies at each launch, when this process could
 * only reach its own memory); the check is made again here because a host
 * address from the network would have the driver read or write the worker.
 *
 * C, the copy: sizeof(CUDA_MEMCPY3D) bytes, the struct as cuda.h lays it out,
 *   both memory types CU_MEMORYTYPE_DEVICE (host and array fields ignored).
 * cuGraphAddMemcpyNode: u64 graph id, u32 m + m x u64 dependency node ids, C,
 *   u64 context id. Reply: result, u64 node id.
 * cuGraphMemcpyNodeSetParams: u64 node id, C. Reply: result.
 * cuGraphExecMemcpyNodeSetParams: u64 exec id, u64 node id, C, u64 context id.
 *   Reply: result.
 * cuGraphMemcpyNodeGetParams is generated (the struct comes back as it is). */
#include <string.h>

#include "handlers.h"

/* The copy read into *p (zeroed when the request is short). */
static void read_copy(gw_call *c, CUDA_MEMCPY3D *p)
{
    memset(p, 0, sizeof *p);
    const void *v = gw_in_view(c, sizeof *p);
    if (v)
        memcpy(p, v, sizeof *p);
}

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

void gw_h_cuGraphAddMemcpyNode(gw_call *c)
{
    CUgraph g = (CUgraph)gw_in_handle(c, GW_HT_CUgraph);
    uint32_t m;
    CUgraphNode *deps = gw_in_counted_handles(c, GW_HT_CUgraphNode, &m);
    CUDA_MEMCPY3D p;
    read_copy(c, &p);
    CUcontext ctx = (CUcontext)gw_in_handle(c, GW_HT_CUcontext);
    if (!gw_args_ok(c) || device_only(c, &p))
        return;
    CUresult (*fn)(CUgraphNode *, CUgraph, const CUgraphNode *, size_t, const CUDA_MEMCPY3D *, CUcontext) =
        (CUresult(*)(CUgraphNode *, CUgraph, const CUgraphNode *, size_t, const CUDA_MEMCPY3D *, CUcontext))
            gw_driver_fn(c, c->h.op);
    if (!fn)
        return;
    CUgraphNode node = NULL;
    CUresult r = fn(&node, g, deps, m, &p, ctx);
    gw_reply_result(c, r);
    if (r == CUDA_SUCCESS)
        gw_reply_handles(c, GW_HT_CUgraphNode, (void **)&node, 1);
}

void gw_h_cuGraphMemcpyNodeSetParams(gw_call *c)
{
    CUgraphNode node = (CUgraphNode)gw_in_handle(c, GW_HT_CUgraphNode);
    CUDA_MEMCPY3D p;
    read_copy(c, &p);
    if (!gw_args_ok(c) || device_only(c, &p))
        return;
    CUresult (*fn)(CUgraphNode, const CUDA_MEMCPY3D *) =
        (CUresult(*)(CUgraphNode, const CUDA_MEMCPY3D *))gw_driver_fn(c, c->h.op);
    if (fn)
        gw_reply_result(c, fn(node, &p));
}

void gw_h_cuGraphExecMemcpyNodeSetParams(gw_call *c)
{
    CUgraphExec e = (CUgraphExec)gw_in_handle(c, GW_HT_CUgraphExec);
    CUgraphNode node = (CUgraphNode)gw_in_handle(c, GW_HT_CUgraphNode);
    CUDA_MEMCPY3D p;
    read_copy(c, &p);
    CUcontext ctx = (CUcontext)gw_in_handle(c, GW_HT_CUcontext);
    if (!gw_args_ok(c) || device_only(c, &p))
        return;
    CUresult (*fn)(CUgraphExec, CUgraphNode, const CUDA_MEMCPY3D *, CUcontext) =
        (CUresult(*)(CUgraphExec, CUgraphNode, const CUDA_MEMCPY3D *, CUcontext))gw_driver_fn(c, c->h.op);
    if (fn)
        gw_reply_result(c, fn(e, node, &p, ctx));
}
