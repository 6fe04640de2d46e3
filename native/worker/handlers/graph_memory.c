/* Memory allocation nodes of graphs.
 *
 * cuGraphAddMemAllocNode: u64 graph id, u32 m + m x u64 dependency node ids,
 *   sizeof(CUDA_MEM_ALLOC_NODE_PARAMS) bytes as cuda.h lays the struct out
 *   (its pointers ignored), u32 k (<= 64) + k x CUmemAccessDesc.
 *   Reply: result, u64 node id, u64 the allocation's device address. */
#include <string.h>

#include "handlers.h"

#define MAX_ACCESS 64

void gw_h_cuGraphAddMemAllocNode(gw_call *c)
{
    CUgraph g = (CUgraph)gw_in_handle(c, GW_HT_CUgraph);
    uint32_t m;
    CUgraphNode *deps = gw_in_counted_handles(c, GW_HT_CUgraphNode, &m);
    CUDA_MEM_ALLOC_NODE_PARAMS p;
    memset(&p, 0, sizeof p);
    const void *v = gw_in_view(c, sizeof p);
    if (v)
        memcpy(&p, v, sizeof p);
    uint32_t k = gw_in_u32(c);
    if (!c->bad && k > MAX_ACCESS)
        gw_call_fail(c, "%s: %u access descriptors", gw_op_name(c->h.op), k);
    const void *descs = c->bad ? NULL : gw_in_view(c, (size_t)k * sizeof(CUmemAccessDesc));
    CUmemAccessDesc *copy = NULL;
    if (!c->bad && k && !(copy = gw_scratch(c, k * sizeof *copy)))
        gw_call_fail(c, "%s: out of memory for %u access descriptors", gw_op_name(c->h.op), k);
    if (!gw_args_ok(c))
        return;
    if (k)
        memcpy(copy, descs, k * sizeof *copy);
    p.accessDescs = copy;
    p.accessDescCount = k;
    p.poolProps.win32SecurityAttributes = NULL; /* a pointer from the network: never passed on */
    p.dptr = 0;
    CUresult (*fn)(CUgraphNode *, CUgraph, const CUgraphNode *, size_t, CUDA_MEM_ALLOC_NODE_PARAMS *) =
        (CUresult(*)(CUgraphNode *, CUgraph, const CUgraphNode *, size_t, CUDA_MEM_ALLOC_NODE_PARAMS *))
            gw_driver_fn(c, c->h.op);
    if (!fn)
        return;
    CUgraphNode node = NULL;
    CUresult r = fn(&node, g, deps, m, &p);
    gw_reply_result(c, r);
    if (r == CUDA_SUCCESS) {
        gw_reply_handles(c, GW_HT_CUgraphNode, (void **)&node, 1);
        uint64_t dptr = p.dptr;
        gw_reply_bytes(c, &dptr, sizeof dptr);
    }
}

/* cuGraphMemAllocNodeGetParams: u64 node id. Reply: result, then on success
 * the struct as cuda.h lays it out (pointers meaningless), u32 k (<= 64) +
 * k x CUmemAccessDesc read through the driver's accessDescs. */
void gw_h_cuGraphMemAllocNodeGetParams(gw_call *c)
{
    CUgraphNode node = (CUgraphNode)gw_in_handle(c, GW_HT_CUgraphNode);
    if (!gw_args_ok(c))
        return;
    CUresult (*fn)(CUgraphNode, CUDA_MEM_ALLOC_NODE_PARAMS *) =
        (CUresult(*)(CUgraphNode, CUDA_MEM_ALLOC_NODE_PARAMS *))gw_driver_fn(c, c->h.op);
    if (!fn)
        return;
    CUDA_MEM_ALLOC_NODE_PARAMS p;
    memset(&p, 0, sizeof p);
    CUresult r = fn(node, &p);
    if (r == CUDA_SUCCESS && (p.accessDescCount > MAX_ACCESS || (p.accessDescCount && !p.accessDescs))) {
        gw_wlog("%s: the driver returned %zu access descriptors", gw_op_name(c->h.op), p.accessDescCount);
        r = CUDA_ERROR_NOT_SUPPORTED;
    }
    gw_reply_result(c, r);
    if (r != CUDA_SUCCESS)
        return;
    const CUmemAccessDesc *descs = p.accessDescs;
    uint32_t k = (uint32_t)p.accessDescCount;
    p.accessDescs = NULL; /* worker addresses do not travel */
    p.poolProps.win32SecurityAttributes = NULL;
    gw_reply_bytes(c, &p, sizeof p);
    gw_reply_u32(c, k);
    if (k)
        gw_reply_bytes(c, descs, k * sizeof *descs);
}
