/* Memory allocation nodes of graphs.
 *
 * Formats: GRAPH_ADD_MEM_ALLOC_NODE, MEM_ALLOC_NODE_GET_PARAMS in
 * codegen/protocol.txt. */
#include <string.h>

#include "handlers.h"

#define MAX_ACCESS GW_ACCESS_DESCS_MAX

void gw_h_cuGraphAddMemAllocNode(gw_call *c)
{
    gw_graph_add_mem_alloc_node_req q = {0};
    CUgraph g = NULL;
    if (gw_in_part(c, gw_graph_add_mem_alloc_node_req, &q))
        g = (CUgraph)gw_handle_lookup(c, GW_HT_CUgraph, q.graph);
    uint32_t m;
    CUgraphNode *deps = gw_in_dependencies(c, &m, "handles");
    gw_graph_add_mem_alloc_node_req_after_deps a;
    memset(&a, 0, sizeof a);
    gw_in_part(c, gw_graph_add_mem_alloc_node_req_after_deps, &a);
    CUDA_MEM_ALLOC_NODE_PARAMS p = a.params;
    uint32_t k = a.k;
    if (!c->bad && k > GW_GRAPH_ADD_MEM_ALLOC_NODE_REQ_ACCESS_MAX)
        gw_call_fail(c, "%s: %u access descriptors", gw_op_name(c->h.op), k);
    size_t bytes = (size_t)k * GW_GRAPH_ADD_MEM_ALLOC_NODE_REQ_ACCESS_ITEM_SIZE;
    const void *descs = c->bad ? NULL : gw_in_view(c, bytes);
    CUmemAccessDesc *copy = NULL;
    if (!c->bad && k && !(copy = gw_scratch(c, k * sizeof *copy)))
        gw_call_fail(c, "%s: out of memory for %u access descriptors", gw_op_name(c->h.op), k);
    gw_graph_add_mem_alloc_node_req_access_item items[MAX_ACCESS];
    if (!c->bad && descs && !gw_graph_add_mem_alloc_node_req_access_get(descs, bytes, k, items))
        gw_call_fail(c, "%s: access descriptors not decoded", gw_op_name(c->h.op)); /* cannot: checked above */
    if (!gw_args_ok(c))
        return;
    for (uint32_t i = 0; i < k; i++)
        copy[i] = items[i].desc;
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
    if (r == CUDA_SUCCESS)
        gw_reply_first(c, gw_graph_add_mem_alloc_node_rep,
                       {.result = r, .node = gw_handle_id(GW_HT_CUgraphNode, node), .address = p.dptr});
    else
        gw_reply_result(c, r);
}

/* MEM_ALLOC_NODE_GET_PARAMS: the descriptors read through the driver's accessDescs */
void gw_h_cuGraphMemAllocNodeGetParams(gw_call *c)
{
    gw_mem_alloc_node_get_params_req q = {0};
    CUgraphNode node = NULL;
    if (gw_in_part(c, gw_mem_alloc_node_get_params_req, &q))
        node = (CUgraphNode)gw_handle_lookup(c, GW_HT_CUgraphNode, q.node);
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
    if (r != CUDA_SUCCESS) {
        gw_reply_result(c, r);
        return;
    }
    const CUmemAccessDesc *descs = p.accessDescs;
    uint32_t k = (uint32_t)p.accessDescCount; /* <= MAX_ACCESS: checked above */
    p.accessDescs = NULL; /* worker addresses do not travel */
    p.poolProps.win32SecurityAttributes = NULL;
    gw_reply_first(c, gw_mem_alloc_node_get_params_rep, {.result = r, .params = p, .k = k});
    for (uint32_t i = 0; i < k; i++)
        gw_reply_fields(c, gw_mem_alloc_node_get_params_rep_access_item, {.desc = descs[i]});
}
