/* cuGraphDebugDotPrint: the server's driver writes the DOT text into a file of
 * its own and sends the bytes back; they are written here, to the path the
 * application gave. Format: GRAPH_DEBUG_DOT_PRINT in codegen/protocol.txt. */
#include <stdio.h>

#include "api.h"

#undef cuGraphDebugDotPrint

CUresult CUDAAPI cuGraphDebugDotPrint(CUgraph hGraph, const char *path, unsigned int flags)
{
    unsigned op = GW_OP_cuGraphDebugDotPrint;
    gw_stat_call(op);
    if (!path)
        return CUDA_ERROR_INVALID_VALUE;
    gw_req *q = gw_req_begin_quiet(op);
    gw_put_fields(q, gw_graph_debug_dot_print_req, {.graph = (uint64_t)(uintptr_t)hGraph, .flags = flags});
    gw_rep *r;
    CUresult rc = gw_req_call(q, &r);
    if (rc == CUDA_SUCCESS) {
        gw_graph_debug_dot_print_rep rep = {0};
        gw_get_fields(r, gw_graph_debug_dot_print_rep, &rep); /* short: the status below says so */
        uint32_t n = rep.n;
        const void *text = n <= GW_GRAPH_DEBUG_DOT_PRINT_REP_DOT_MAX ? gw_get_view(r, n) : NULL;
        rc = gw_rep_status(r, rc);
        if (rc == CUDA_SUCCESS && !text)
            rc = CUDA_ERROR_UNKNOWN;
        if (rc == CUDA_SUCCESS) {
            FILE *f = fopen(path, "w");
            if (!f || fwrite(text, 1, n, f) != n)
                rc = CUDA_ERROR_OPERATING_SYSTEM;
            if (f && fclose(f))
                rc = CUDA_ERROR_OPERATING_SYSTEM;
        }
    }
    gw_rep_end(r);
    return rc;
}
