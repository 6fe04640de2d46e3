/* Conditional nodes: they have no entry point of their own, so they travel as
 * cuGraphAddNode_v2 (graph_node_params.c sends every other type through its
 * own call). The driver makes the body graphs and hands back an array it owns
 * for the node's life; here the array holds the bodies' ids and is kept for
 * the rest of the process (nothing tells the client when a node goes). The
 * condition handle is a value the driver chose: it travels as it is, and
 * kernels set it on the GPU. Wire format: native/worker/graph_conditional.c. */
#include <stdlib.h>

#include "api.h"

#define MAX_BODIES GW_CONDITIONAL_BODIES_MAX

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
    gw_req *q = gw_req_begin_quiet(op); /* GRAPH_ADD_CONDITIONAL_NODE in codegen/protocol.txt */
    gw_put_fields(q, gw_graph_add_conditional_node_req, {.graph = (uint64_t)(uintptr_t)g});
    gw_put_dependencies(q, deps, n);
    gw_put_fields(q, gw_graph_add_conditional_node_req_after_deps,
                  {.condition = p->handle, .conditional_type = (uint32_t)p->type, .bodies = p->size,
                   .context = (uint64_t)(uintptr_t)p->ctx});
    gw_rep *r;
    CUresult rc = gw_req_call(q, &r);
    if (rc == CUDA_SUCCESS) {
        gw_graph_add_conditional_node_rep rep = {0};
        gw_get_fields(r, gw_graph_add_conditional_node_rep, &rep); /* short: the status below says so */
        uint64_t id = rep.node;
        for (uint32_t i = 0; i < p->size; i++) {
            gw_graph_add_conditional_node_rep_body_graphs_item it = {0};
            gw_get_part(r, gw_graph_add_conditional_node_rep_body_graphs_item, &it);
            bodies[i] = (CUgraph)(uintptr_t)it.graph;
        }
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
