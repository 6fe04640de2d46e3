/* cuGraphExecUpdate_v2: its result information comes back in the reply
 * (the worker's handler gives the wire format). */
#include <string.h>

#include "api.h"

#undef cuGraphExecUpdate
CUresult CUDAAPI cuGraphExecUpdate_v2(CUgraphExec hGraphExec, CUgraph hGraph, CUgraphExecUpdateResultInfo *resultInfo)
{
    gw_req *q = gw_req_begin(GW_OP_cuGraphExecUpdate_v2);
    gw_put_u64(q, (uint64_t)(uintptr_t)hGraphExec);
    gw_put_u64(q, (uint64_t)(uintptr_t)hGraph);
    gw_put_u32(q, resultInfo != NULL);
    gw_rep *r;
    CUresult rc = gw_req_call(q, &r);
    if (resultInfo && gw_get_u32(r) == 1) { /* the driver was asked: its info stands, failure or not */
        CUgraphExecUpdateResultInfo info;
        memset(&info, 0, sizeof info);
        info.result = (CUgraphExecUpdateResult)gw_get_u32(r);
        gw_get_handles(r, (void **)&info.errorNode, 1);
        gw_get_handles(r, (void **)&info.errorFromNode, 1);
        if (gw_rep_status(r, CUDA_SUCCESS) == CUDA_SUCCESS)
            *resultInfo = info;
        else
            rc = CUDA_ERROR_UNKNOWN;
    }
    gw_rep_end(r);
    return rc;
}
