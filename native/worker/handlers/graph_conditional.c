/* Conditional nodes, the one node type that travels as cuGraphAddNode_v2.
 *
 * Request: u64 graph id, u32 m + m x u64 dependency node ids, u64 condition
 *   handle (the driver's value), u32 conditional type, u32 n bodies
 *   (1..65536), u64 context id. Reply: result, u64 node id, n x u64 body
 *   graph ids (graphs the driver made and owns with the node). */
#include <string.h>

#include "handlers.h"

#define MAX_BODIES 65536

void gw_h_cuGraphAddNode_v2(gw_call *c)
{
    CUgraph g = (CUgraph)gw_in_handle(c, GW_HT_CUgraph);
    uint32_t m;
    CUgraphNode *deps = gw_in_counted_handles(c, GW_HT_CUgraphNode, &m);
    CUgraphNodeParams p;
    memset(&p, 0, sizeof p);
    p.type = CU_GRAPH_NODE_TYPE_CONDITIONAL;
    p.conditional.handle = gw_in_u64(c);
    p.conditional.type = (CUgraphConditionalNodeType)gw_in_u32(c);
    p.conditional.size = gw_in_u32(c);
    p.conditional.ctx = (CUcontext)gw_in_handle(c, GW_HT_CUcontext);
    if (!c->bad && (p.conditional.size == 0 || p.conditional.size > MAX_BODIES))
        gw_call_fail(c, "%s: %u conditional bodies", gw_op_name(c->h.op), p.conditional.size);
    if (!gw_args_ok(c))
        return;
    CUresult (*fn)(CUgraphNode *, CUgraph, const CUgraphNode *, const CUgraphEdgeData *, size_t,
                   CUgraphNodeParams *) =
        (CUresult(*)(CUgraphNode *, CUgraph, const CUgraphNode *, const CUgraphEdgeData *, size_t,
                     CUgraphNodeParams *))gw_driver_fn(c, c->h.op);
    if (!fn)
        return;
    CUgraphNode node = NULL;
    CUresult r = fn(&node, g, deps, NULL, m, &p);
    if (r == CUDA_SUCCESS && !p.conditional.phGraph_out) {
        gw_wlog("%s: the driver gave no body graphs", gw_op_name(c->h.op));
        r = CUDA_ERROR_UNKNOWN;
    }
    gw_reply_result(c, r);
    if (r == CUDA_SUCCESS) {
        gw_reply_handles(c, GW_HT_CUgraphNode, (void **)&node, 1);
        gw_reply_handles(c, GW_HT_CUgraph, (void **)p.conditional.phGraph_out, p.conditional.size);
    }
}
