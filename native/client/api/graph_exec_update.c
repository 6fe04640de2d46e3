/* cuGraphExecUpdate_v2: its result information comes back in the reply
 * (GRAPH_EXEC_UPDATE in codegen/protocol.txt). */
#include <string.h>

#include "api.h"

#undef cuGraphExecUpdate
CUresult CUDAAPI cuGraphExecUpdate_v2(CUgraphExec hGraphExec, CUgraph hGraph, CUgraphExecUpdateResultInfo *resultInfo)
{
    gw_req *q = gw_req_begin(GW_OP_cuGraphExecUpdate_v2); /* GRAPH_EXEC_UPDATE in codegen/protocol.txt */
    gw_put_fields(q, gw_graph_exec_update_req,
                  {.exec = (uint64_t)(uintptr_t)hGraphExec, .graph = (uint64_t)(uintptr_t)hGraph,
                   .want_info = resultInfo != NULL});
    gw_rep *r;
    CUresult rc = gw_req_call(q, &r);
    if (resultInfo) {
        gw_graph_exec_update_rep_info v = {0};
        const uint8_t *at = gw_rep_here(r);
        size_t left = gw_rep_left(r);
        int whole = gw_get_part(r, gw_graph_exec_update_rep_info, &v) == 0;
        uint32_t given = 0;
        if (whole)
            given = v.given;
        else if (left >= sizeof given)
            memcpy(&given, at, sizeof given); /* a cut info part: the reply is short */
        if (given == 1) { /* the driver was asked: its info stands, failure or not */
            if (whole) {
                CUgraphExecUpdateResultInfo info;
                memset(&info, 0, sizeof info);
                info.result = (CUgraphExecUpdateResult)v.update_result;
                info.errorNode = (CUgraphNode)(uintptr_t)v.error_node;
                info.errorFromNode = (CUgraphNode)(uintptr_t)v.error_from_node;
                *resultInfo = info;
            } else {
                rc = CUDA_ERROR_UNKNOWN;
            }
        }
    }
    gw_rep_end(r);
    if (rc == CUDA_SUCCESS)
        gw_graph_sources_exec_updated(hGraphExec, hGraph); /* host sources: state/graph_sources.c */
    return rc;
}
