/* cuGraphExecUpdate_v2, hand-written: its optional result info names graph
 * nodes, which go back as handle ids.
 *
 * Format: GRAPH_EXEC_UPDATE in codegen/protocol.txt. */
#include <string.h>

#include "handlers.h"

void gw_h_cuGraphExecUpdate_v2(gw_call *c)
{
    gw_graph_exec_update_req q = {0};
    CUgraphExec exec = NULL;
    CUgraph graph = NULL;
    if (gw_in_part(c, gw_graph_exec_update_req, &q)) {
        exec = (CUgraphExec)gw_handle_lookup(c, GW_HT_CUgraphExec, q.exec);
        graph = (CUgraph)gw_handle_lookup(c, GW_HT_CUgraph, q.graph);
    }
    uint32_t want = q.want_info;
    if (!c->bad && want > 1)
        gw_call_fail(c, "cuGraphExecUpdate_v2: info flag %u", want);
    if (!gw_args_ok(c))
        return;
    CUresult (*fn)(CUgraphExec, CUgraph, CUgraphExecUpdateResultInfo *) =
        (CUresult(*)(CUgraphExec, CUgraph, CUgraphExecUpdateResultInfo *))gw_driver_fn(c, GW_OP_cuGraphExecUpdate_v2);
    if (!fn)
        return;
    CUgraphExecUpdateResultInfo info;
    memset(&info, 0, sizeof info);
    CUresult r = fn(exec, graph, want ? &info : NULL);
    gw_reply_result(c, r);
    if (!want)
        return;
    uint64_t node = gw_handle_id(GW_HT_CUgraphNode, info.errorNode); /* in this order: a new id for each */
    uint64_t from = gw_handle_id(GW_HT_CUgraphNode, info.errorFromNode);
    gw_reply_fields(c, gw_graph_exec_update_rep_info,
                    {.given = 1, .update_result = (uint32_t)info.result, .error_node = node, .error_from_node = from});
}
