/* Memory allocation nodes of graphs: the driver picks the allocation's address
 * when the node is added and the application reads it from the parameters, so
 * adding one waits for its reply. The address is not tracked as a known device
 * allocation (its memory exists only between the node and its free node at
 * launch): posted work on it is sent as waiting calls instead, which is only
 * slower. The addresses are remembered apart, for the rest of the process,
 * so that a memcpy node can tell a unified address there from host memory.
 * Wire format: native/worker/graph_memory.c. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"

#undef cuGraphAddMemAllocNode

#define MAX_ACCESS GW_ACCESS_DESCS_MAX /* access descriptors: at most one per GPU */

static struct { uint64_t base, size; } *graph_mem;
static size_t graph_mem_n, graph_mem_cap;
static pthread_mutex_t graph_mem_lock = PTHREAD_MUTEX_INITIALIZER;

static void remember(uint64_t base, uint64_t size)
{
    pthread_mutex_lock(&graph_mem_lock);
    if (graph_mem_n == graph_mem_cap) {
        size_t cap = graph_mem_cap ? 2 * graph_mem_cap : 16;
        void *v = realloc(graph_mem, cap * sizeof *graph_mem);
        if (v) {
            graph_mem = v;
            graph_mem_cap = cap;
        }
    }
    if (graph_mem_n < graph_mem_cap) { /* out of memory: only a unified address there is refused */
        graph_mem[graph_mem_n].base = base;
        graph_mem[graph_mem_n].size = size;
        graph_mem_n++;
    }
    pthread_mutex_unlock(&graph_mem_lock);
}

int gw_graph_mem_has(uint64_t addr)
{
    int found = 0;
    pthread_mutex_lock(&graph_mem_lock);
    for (size_t i = 0; !found && i < graph_mem_n; i++)
        found = addr - graph_mem[i].base < graph_mem[i].size;
    pthread_mutex_unlock(&graph_mem_lock);
    return found;
}

CUresult CUDAAPI cuGraphAddMemAllocNode(CUgraphNode *phGraphNode, CUgraph hGraph, const CUgraphNode *dependencies,
                                        size_t numDependencies, CUDA_MEM_ALLOC_NODE_PARAMS *nodeParams)
{
    unsigned op = GW_OP_cuGraphAddMemAllocNode;
    gw_stat_call(op);
    if (!phGraphNode || !nodeParams || (numDependencies && !dependencies) || numDependencies > GW_MAX_PAYLOAD / 16 ||
        nodeParams->accessDescCount > MAX_ACCESS || (nodeParams->accessDescCount && !nodeParams->accessDescs))
        return CUDA_ERROR_INVALID_VALUE;
    if (nodeParams->poolProps.win32SecurityAttributes) {
        gw_log("%s: Windows security attributes are not supported by gpuwire", gw_op_name(op));
        return CUDA_ERROR_NOT_SUPPORTED;
    }
    CUDA_MEM_ALLOC_NODE_PARAMS p = *nodeParams;
    p.accessDescs = NULL; /* they follow the struct */
    p.dptr = 0;
    /* several servers: the pool's and the access list's devices are the client's ordinals, made
     * the graph's server's (api/mem_locations.c) */
    CUmemAccessDesc descs[MAX_ACCESS];
    for (size_t i = 0; i < p.accessDescCount; i++)
        descs[i] = nodeParams->accessDescs[i];
    int k = gw_servers_n > 1 ? gw_handle_server((uint64_t)(uintptr_t)hGraph) : -1;
    if (gw_servers_n > 1) {
        CUresult bad = gw_mem_location_to_server(op, &p.poolProps.location, &k);
        for (size_t i = 0; bad == CUDA_SUCCESS && i < p.accessDescCount; i++)
            bad = gw_mem_location_to_server(op, &descs[i].location, &k);
        if (bad != CUDA_SUCCESS)
            return bad;
    }
    gw_req *q = gw_req_begin_quiet(op); /* GRAPH_ADD_MEM_ALLOC_NODE in codegen/protocol.txt */
    gw_put_fields(q, gw_graph_add_mem_alloc_node_req, {.graph = (uint64_t)(uintptr_t)hGraph});
    gw_put_dependencies(q, dependencies, numDependencies);
    gw_put_fields(q, gw_graph_add_mem_alloc_node_req_after_deps, {.params = p, .k = (uint32_t)p.accessDescCount});
    for (size_t i = 0; i < p.accessDescCount; i++)
        gw_put_fields(q, gw_graph_add_mem_alloc_node_req_access_item, {.desc = descs[i]});
    gw_req_route(q, k);
    gw_rep *r;
    CUresult rc = gw_req_call(q, &r);
    if (rc == CUDA_SUCCESS) {
        gw_graph_add_mem_alloc_node_rep rep = {0};
        gw_get_fields(r, gw_graph_add_mem_alloc_node_rep, &rep); /* short: the status below says so */
        uint64_t id = rep.node;
        uint64_t dptr = rep.address;
        rc = gw_rep_status(r, rc);
        if (rc == CUDA_SUCCESS) {
            *phGraphNode = (CUgraphNode)(uintptr_t)id;
            nodeParams->dptr = (CUdeviceptr)dptr;
            remember(dptr, p.bytesize);
        }
    }
    gw_rep_end(r);
    return rc;
}

#undef cuGraphMemAllocNodeGetParams

/* The access descriptors the driver returns stay readable while the node
 * lives; nothing tells the client when that ends, so each answer's copy is
 * kept for the rest of the process. */
CUresult CUDAAPI cuGraphMemAllocNodeGetParams(CUgraphNode hNode, CUDA_MEM_ALLOC_NODE_PARAMS *params_out)
{
    unsigned op = GW_OP_cuGraphMemAllocNodeGetParams;
    gw_stat_call(op);
    if (!params_out)
        return CUDA_ERROR_INVALID_VALUE;
    gw_req *q = gw_req_begin_quiet(op); /* MEM_ALLOC_NODE_GET_PARAMS */
    gw_put_fields(q, gw_mem_alloc_node_get_params_req, {.node = (uint64_t)(uintptr_t)hNode});
    gw_rep *r;
    CUresult rc = gw_req_call(q, &r);
    if (rc == CUDA_SUCCESS) {
        gw_mem_alloc_node_get_params_rep rep;
        memset(&rep, 0, sizeof rep);
        gw_get_fields(r, gw_mem_alloc_node_get_params_rep, &rep); /* short: the status below says so */
        CUDA_MEM_ALLOC_NODE_PARAMS p = rep.params;
        uint32_t k = rep.k;
        size_t bytes = (size_t)k * GW_MEM_ALLOC_NODE_GET_PARAMS_REP_ACCESS_ITEM_SIZE;
        const void *descs = k <= MAX_ACCESS ? gw_get_view(r, bytes) : NULL;
        rc = gw_rep_status(r, rc);
        gw_mem_alloc_node_get_params_rep_access_item items[GW_MEM_ALLOC_NODE_GET_PARAMS_REP_ACCESS_MAX];
        if (rc == CUDA_SUCCESS && (!descs || !gw_mem_alloc_node_get_params_rep_access_get(descs, bytes, k, items)))
            rc = CUDA_ERROR_UNKNOWN;
        CUmemAccessDesc *kept = NULL;
        if (rc == CUDA_SUCCESS && k && !(kept = malloc(k * sizeof *kept)))
            rc = CUDA_ERROR_OUT_OF_MEMORY;
        if (rc == CUDA_SUCCESS) {
            int from = gw_route_now(); /* several servers: where the request went (the thread's context's) */
            for (uint32_t i = 0; i < k; i++) {
                kept[i] = items[i].desc;
                if (gw_servers_n > 1)
                    gw_mem_location_to_client(&kept[i].location, from);
            }
            if (gw_servers_n > 1)
                gw_mem_location_to_client(&p.poolProps.location, from);
            p.accessDescs = kept;
            p.accessDescCount = k;
            p.poolProps.win32SecurityAttributes = NULL;
            *params_out = p;
        }
    }
    gw_rep_end(r);
    return rc;
}
