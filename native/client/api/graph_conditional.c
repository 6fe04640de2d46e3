/* Conditional nodes: they have no entry point of their own, so they travel as
 * cuGraphAddNode_v2 (graph_node_params.c sends every other type through its
 * own call). The driver makes the body graphs and hands back an array it owns
 * for the node's life; here the array holds the bodies' ids and is kept for
 * the rest of the process (nothing tells the client when a node goes). The
 * condition handle is a value the driver chose: it travels as it is, and
 * kernels set it on the GPU. Wire format: native/worker/graph_conditional.c. */
#include <stdlib.h>

#include "api.h"

#define MAX_BODIES 65536

CUresult gw_graph_add_conditional(CUgraphNode *out, CUgraph g, const CUgraphNode *deps, size_t n,
                                  CUDA_CONDITIONAL_NODE_PARAMS *p)
{
    unsigned op = GW_OP_cuGraphAddNode_v2;
    gw_stat_call(op);
    if (!out || (n && !deps) || n > GW_MAX_PAYLOAD / 16 || !p->size || p->size > MAX_BODIES)
        return CUDA_ERROR_INVALID_VALUE;
    CUgraph *bodies = calloc(p->size, sizeof *bodies);
    if (!bodies)
        return CUDA_ERROR_OUT_OF_MEMORY;
    gw_req *q = gw_req_begin_quiet(op);
    gw_put_u64(q, (uint64_t)(uintptr_t)g);
    gw_put_u32(q, (uint32_t)n);
    if (n)
        gw_put_raw(q, deps, n * sizeof *deps);
    gw_put_u64(q, p->handle);
    gw_put_u32(q, (uint32_t)p->type);
    gw_put_u32(q, p->size);
    gw_put_u64(q, (uint64_t)(uintptr_t)p->ctx);
    gw_rep *r;
    CUresult rc = gw_req_call(q, &r);
    if (rc == CUDA_SUCCESS) {
        uint64_t id = gw_get_u64(r);
        gw_get_handles(r, (void **)bodies, p->size);
        rc = gw_rep_status(r, rc);
        if (rc == CUDA_SUCCESS) {
            *out = (CUgraphNode)(uintptr_t)id;
            p->phGraph_out = bodies;
            bodies = NULL;
        }
    }
    gw_rep_end(r);
    free(bodies);
    return rc;
}
