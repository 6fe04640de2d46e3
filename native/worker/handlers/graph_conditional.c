/* Conditional nodes, the one node type that travels as cuGraphAddNode_v2.
 * Format: GRAPH_ADD_CONDITIONAL_NODE in codegen/protocol.txt (the body
 * graphs are the driver's, owned with the node). */
#include <string.h>

#include "handlers.h"

#define MAX_BODIES GW_CONDITIONAL_BODIES_MAX

void gw_h_cuGraphAddNode_v2(gw_call *c)
{
    gw_graph_add_conditional_node_req q = {0};
    CUgraph g = NULL;
    if (gw_in_part(c, gw_graph_add_conditional_node_req, &q))
        g = (CUgraph)gw_handle_lookup(c, GW_HT_CUgraph, q.graph);
    uint32_t m;
    CUgraphNode *deps = gw_in_dependencies(c, &m, "handles");
    gw_graph_add_conditional_node_req_after_deps a = {0};
    CUgraphNodeParams p;
    memset(&p, 0, sizeof p);
    p.type = CU_GRAPH_NODE_TYPE_CONDITIONAL;
    if (gw_in_part(c, gw_graph_add_conditional_node_req_after_deps, &a)) {
        p.conditional.handle = a.condition;
        p.conditional.type = (CUgraphConditionalNodeType)a.conditional_type;
        p.conditional.size = a.bodies;
        p.conditional.ctx = (CUcontext)gw_handle_lookup(c, GW_HT_CUcontext, a.context);
    }
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
    if (r != CUDA_SUCCESS) {
        gw_reply_result(c, r);
        return;
    }
    gw_reply_first(c, gw_graph_add_conditional_node_rep, {.result = r, .node = gw_handle_id(GW_HT_CUgraphNode, node)});
    for (uint32_t i = 0; i < p.conditional.size; i++)
        gw_reply_fields(c, gw_graph_add_conditional_node_rep_body_graphs_item,
                        {.graph = gw_handle_id(GW_HT_CUgraph, p.conditional.phGraph_out[i])});
}
