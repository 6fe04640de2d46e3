/* cuGraphExecUpdate_v2, hand-written: its optional result info names graph
 * nodes, which go back as handle ids.
 *
 * Request: u64 exec id, u64 graph id, u32 info wanted.
 * Reply: result; then, whenever the driver was called and info was wanted
 *   (failures too: the info says why), u32 1, u32 CUgraphExecUpdateResult,
 *   u64 error node id, u64 error-from node id. */
#include <string.h>

#include "handlers.h"

void gw_h_cuGraphExecUpdate_v2(gw_call *c)
{
    CUgraphExec exec = (CUgraphExec)gw_in_handle(c, GW_HT_CUgraphExec);
    CUgraph graph = (CUgraph)gw_in_handle(c, GW_HT_CUgraph);
    uint32_t want = gw_in_u32(c);
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
    gw_reply_u32(c, 1);
    gw_reply_u32(c, (uint32_t)info.result);
    gw_reply_handles(c, GW_HT_CUgraphNode, (void **)&info.errorNode, 1);
    gw_reply_handles(c, GW_HT_CUgraphNode, (void **)&info.errorFromNode, 1);
}
