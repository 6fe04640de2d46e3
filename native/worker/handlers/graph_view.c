/* The application's view of a graph: gpuwire's own nodes left out. A copy
 * delivered into the client's memory is a memcpy node into staging plus a
 * host node of the worker's that sends the bytes (deliveries.c), in graphs
 * the client builds and in captured ones; natively that is one node, and
 * programs count and walk their graphs' nodes (compat's graph_capture,
 * gpu-check's graph_host_copies). These wrappers take the place of the
 * driver's entry points that list a graph's nodes and roots (before serving
 * starts, as launch.c's do) and drop the worker's host nodes from what they
 * return. (A delivery's host node is never a root; the node lists of edges,
 * cuGraphNodeGetDependentNodes and cuGraphGetEdges, are not forwarded.) */
#include <stdlib.h>
#include <string.h>

#include "handlers.h"

typedef CUresult (*list_graph_fn)(CUgraph, CUgraphNode *, size_t *);
static list_graph_fn real_get_nodes, real_get_roots;

/* Lists through `list`, then keeps what the application may see, with the
 * driver's contract: nodes NULL asks the count; else up to *num entries are
 * written, the rest of the array NULL, and *num says how many. */
static CUresult filtered(list_graph_fn list, CUgraph of, CUgraphNode *nodes, size_t *num)
{
    if (!num)
        return CUDA_ERROR_INVALID_VALUE;
    size_t total = 0;
    CUresult r = list(of, NULL, &total);
    if (r != CUDA_SUCCESS)
        return r;
    CUgraphNode *all = total ? calloc(total, sizeof *all) : NULL;
    if (total && !all)
        return CUDA_ERROR_OUT_OF_MEMORY;
    size_t got = total;
    if (total)
        r = list(of, all, &got);
    size_t seen = 0;
    for (size_t i = 0; r == CUDA_SUCCESS && i < got && i < total; i++)
        if (!gw_delivery_is_node(all[i]))
            all[seen++] = all[i];
    if (r == CUDA_SUCCESS) {
        if (!nodes) {
            *num = seen;
        } else {
            size_t n = *num < seen ? *num : seen;
            memcpy(nodes, all, n * sizeof *nodes);
            for (size_t i = n; i < *num; i++)
                nodes[i] = NULL;
            *num = n;
        }
    }
    free(all);
    return r;
}

static CUresult get_nodes(CUgraph g, CUgraphNode *nodes, size_t *num) { return filtered(real_get_nodes, g, nodes, num); }
static CUresult get_roots(CUgraph g, CUgraphNode *nodes, size_t *num) { return filtered(real_get_roots, g, nodes, num); }

void gw_graph_view_install(void **syms)
{
    real_get_nodes = (list_graph_fn)syms[GW_OP_cuGraphGetNodes - 256];
    real_get_roots = (list_graph_fn)syms[GW_OP_cuGraphGetRootNodes - 256];
    if (real_get_nodes)
        syms[GW_OP_cuGraphGetNodes - 256] = (void *)get_nodes;
    if (real_get_roots)
        syms[GW_OP_cuGraphGetRootNodes - 256] = (void *)get_roots;
}
