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

#define MAX_ACCESS 64 /* access descriptors: at most one per GPU */

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
    gw_req *q = gw_req_begin_quiet(op);
    gw_put_u64(q, (uint64_t)(uintptr_t)hGraph);
    gw_put_u32(q, (uint32_t)numDependencies);
    if (numDependencies)
        gw_put_raw(q, dependencies, numDependencies * sizeof *dependencies);
    gw_put_raw(q, &p, sizeof p);
    gw_put_u32(q, (uint32_t)p.accessDescCount);
    if (p.accessDescCount)
        gw_put_raw(q, nodeParams->accessDescs, p.accessDescCount * sizeof *nodeParams->accessDescs);
    gw_rep *r;
    CUresult rc = gw_req_call(q, &r);
    if (rc == CUDA_SUCCESS) {
        uint64_t id = gw_get_u64(r);
        uint64_t dptr = gw_get_u64(r);
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
    gw_req *q = gw_req_begin_quiet(op);
    gw_put_u64(q, (uint64_t)(uintptr_t)hNode);
    gw_rep *r;
    CUresult rc = gw_req_call(q, &r);
    if (rc == CUDA_SUCCESS) {
        CUDA_MEM_ALLOC_NODE_PARAMS p;
        memset(&p, 0, sizeof p);
        gw_get_bytes(r, &p, sizeof p);
        uint32_t k = gw_get_u32(r);
        const void *descs = k <= MAX_ACCESS ? gw_get_view(r, (size_t)k * sizeof(CUmemAccessDesc)) : NULL;
        rc = gw_rep_status(r, rc);
        if (rc == CUDA_SUCCESS && !descs)
            rc = CUDA_ERROR_UNKNOWN;
        CUmemAccessDesc *kept = NULL;
        if (rc == CUDA_SUCCESS && k && !(kept = malloc(k * sizeof *kept)))
            rc = CUDA_ERROR_OUT_OF_MEMORY;
        if (rc == CUDA_SUCCESS) {
            if (k)
                memcpy(kept, descs, k * sizeof *kept);
            p.accessDescs = kept;
            p.accessDescCount = k;
            p.poolProps.win32SecurityAttributes = NULL;
            *params_out = p;
        }
    }
    gw_rep_end(r);
    return rc;
}
