/* Memcpy nodes of graphs. A node copies again at every launch, on the server,
 * long after the call that made it, so a side in this process's memory must
 * be reachable from there:
 * - device memory, or a unified address inside a device allocation this
 *   process knows (graph memory included): as it is;
 * - page-locked or mapped host memory: made a mapped range (state/mapped.c),
 *   the same address on the server, kept coherent at CUDA calls; the node
 *   sees it as device memory;
 * - any other host memory as the destination of a new node copying one row
 *   from the device: delivered. The worker's node copies into staging and a
 *   host node after it sends the bytes, written here before the reply of any
 *   call that could see the launch done (state/deliveries.c);
 * - any other host memory as the source of a new node copying one row to
 *   the device: a host source. The worker's node copies from device staging
 *   named by an id chosen here, and every launch first sends the bytes the
 *   source holds then (state/graph_sources.c, api/graph_sources.c).
 * New parameters may read a host source too: an executable graph's node, or
 * a graph's node that reads one already (the client knows its graph then).
 * Anything else (several rows, arrays) is refused, logged. Wire formats:
 * codegen/protocol.txt. */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "api.h"

#undef cuGraphAddMemcpyNode
#undef cuGraphMemcpyNodeSetParams
#undef cuGraphExecMemcpyNodeSetParams

/* One side of a copy made device-typed; 0, or -1 when the server cannot reach it. */
static int device_side(CUmemorytype *type, CUdeviceptr *dev, const void **host)
{
    if (*type == CU_MEMORYTYPE_DEVICE)
        return 0;
    if (*type == CU_MEMORYTYPE_UNIFIED && (gw_mem_is_device_range((uint64_t)*dev, 1) || gw_graph_mem_has(*dev))) {
        *type = CU_MEMORYTYPE_DEVICE;
        *host = NULL;
        return 0;
    }
    uint64_t h = *type == CU_MEMORYTYPE_HOST ? (uint64_t)(uintptr_t)*host
                 : *type == CU_MEMORYTYPE_UNIFIED ? (uint64_t)*dev : 0;
    CUdeviceptr mapped = 0;
    if (h && (gw_mapped_lookup(h, 1, NULL, NULL, NULL) ||
              (gw_mem_is_pinned_range(h, 1) && cuMemHostGetDevicePointer_v2(&mapped, (void *)(uintptr_t)h, 0) ==
                                                   CUDA_SUCCESS))) {
        *type = CU_MEMORYTYPE_DEVICE;
        *dev = (CUdeviceptr)h;
        *host = NULL;
        return 0;
    }
    return -1;
}

/* A new node's host source: what a launch sends into its staging. */
typedef struct host_source {
    uint64_t staging; /* 0: none */
    const void *src;
    uint64_t n;
} host_source;

/* The largest host source: the worker's staging limit (worker/handlers/graph_sources.c). */
#define SOURCE_MAX ((uint64_t)1 << 32)

/* Whether n bytes at p are all mapped in this process: a unified address no
 * allocation here accounts for may be device memory (the GPU's address),
 * which a launch must never read here. */
static int readable_here(const uint8_t *p, uint64_t n)
{
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0)
        return 0;
    uintptr_t lo = (uintptr_t)p & ~(uintptr_t)(page - 1), hi = (uintptr_t)p + n;
    if (hi < (uintptr_t)p)
        return 0;
    size_t pages = (hi - lo + (uintptr_t)page - 1) / (uintptr_t)page;
    unsigned char *vec = malloc(pages);
    int ok = vec && mincore((void *)lo, hi - lo, vec) == 0; /* ENOMEM: a page is not mapped */
    free(vec);
    return ok;
}

/* The first byte a one-row copy reads or writes on a host side. */
static uint8_t *row_start(uint8_t *base, size_t x, size_t y, size_t z, size_t pitch, size_t height)
{
    return base ? base + x + y * pitch + z * pitch * height : NULL;
}

/* p as it may travel, in *out; CUDA_ERROR_NOT_SUPPORTED (logged) for a side
 * the server cannot reach at launch time. A new node (add) may deliver into
 * host memory; where hs is given, the parameters may read a host source (*hs). */
static CUresult checked(unsigned op, const CUDA_MEMCPY3D *p, CUDA_MEMCPY3D *out, int add, host_source *hs)
{
    if (!p)
        return CUDA_ERROR_INVALID_VALUE;
    *out = *p;
    const void *dst_host = out->dstHost;
    int src_bad = device_side(&out->srcMemoryType, &out->srcDevice, &out->srcHost);
    int dst_bad = device_side(&out->dstMemoryType, &out->dstDevice, &dst_host);
    int one_row = out->Height == 1 && out->Depth == 1 && out->WidthInBytes;
    if (src_bad && !dst_bad && hs && one_row &&
        (out->srcMemoryType == CU_MEMORYTYPE_HOST || out->srcMemoryType == CU_MEMORYTYPE_UNIFIED)) {
        uint8_t *base = out->srcMemoryType == CU_MEMORYTYPE_HOST ? (uint8_t *)out->srcHost
                                                                  : (uint8_t *)(uintptr_t)out->srcDevice;
        uint8_t *first = row_start(base, out->srcXInBytes, out->srcY, out->srcZ, out->srcPitch, out->srcHeight);
        if (first && out->WidthInBytes <= SOURCE_MAX && readable_here(first, out->WidthInBytes)) {
            *hs = (host_source){gw_graph_source_id(), first, out->WidthInBytes};
            out->srcMemoryType = CU_MEMORYTYPE_HOST;
            out->srcHost = (void *)(uintptr_t)hs->staging; /* the worker's staging id, never an address there */
            out->srcDevice = 0;
            out->srcXInBytes = out->srcY = out->srcZ = 0;
            src_bad = 0;
        }
    }
    if (dst_bad && !src_bad && add && one_row &&
        (out->dstMemoryType == CU_MEMORYTYPE_HOST || out->dstMemoryType == CU_MEMORYTYPE_UNIFIED) &&
        out->srcMemoryType == CU_MEMORYTYPE_DEVICE) {
        uint8_t *base = out->dstMemoryType == CU_MEMORYTYPE_HOST ? (uint8_t *)out->dstHost
                                                                  : (uint8_t *)(uintptr_t)out->dstDevice;
        uint8_t *first = row_start(base, out->dstXInBytes, out->dstY, out->dstZ, out->dstPitch, out->dstHeight);
        uint64_t id = first ? gw_delivery_for_node(first, out->WidthInBytes) : 0; /* from the graph's server */
        if (id) {
            out->dstMemoryType = CU_MEMORYTYPE_HOST;
            dst_host = (void *)(uintptr_t)id; /* the worker's delivery id, never an address there */
            out->dstDevice = 0;
            out->dstXInBytes = out->dstY = out->dstZ = 0;
            dst_bad = 0;
        }
    }
    if (src_bad || dst_bad) {
        gw_log("%s: a memcpy node with a side in host memory the server cannot reach at each launch is not "
               "supported by gpuwire (served: page-locked memory, as mapped memory; one row of other host memory "
               "copied to the device, up to 4 GiB and mapped in this process, by a new node, an executable "
               "graph's node or a node that reads host memory already; one row copied from the device into it "
               "by a new node; not arrays or several rows)",
               gw_op_name(op));
        return CUDA_ERROR_NOT_SUPPORTED;
    }
    out->dstHost = (void *)dst_host;
    out->srcArray = out->dstArray = NULL;
    return CUDA_SUCCESS;
}

static CUresult finish(gw_req *q, CUgraphNode *out)
{
    gw_rep *r;
    CUresult rc = gw_req_call(q, &r);
    if (rc == CUDA_SUCCESS) {
        gw_graph_add_memcpy_node_rep rep = {0};
        if (out)
            gw_get_fields(r, gw_graph_add_memcpy_node_rep, &rep); /* short: the status below says so */
        rc = gw_rep_status(r, rc);
        if (rc == CUDA_SUCCESS && out)
            *out = (CUgraphNode)(uintptr_t)rep.node;
    }
    gw_rep_end(r);
    return rc;
}

CUresult CUDAAPI cuGraphAddMemcpyNode(CUgraphNode *phGraphNode, CUgraph hGraph, const CUgraphNode *dependencies,
                                      size_t numDependencies, const CUDA_MEMCPY3D *copyParams, CUcontext ctx)
{
    unsigned op = GW_OP_cuGraphAddMemcpyNode;
    gw_stat_call(op);
    if (!phGraphNode || (numDependencies && !dependencies) || numDependencies > GW_MAX_PAYLOAD / 16)
        return CUDA_ERROR_INVALID_VALUE;
    CUDA_MEMCPY3D p;
    host_source hs = {0};
    /* several servers: a delivery into host memory is the graph's server's to make */
    int route = gw_route_enter(gw_handle_server((uint64_t)(uintptr_t)hGraph));
    CUresult rc = checked(op, copyParams, &p, 1, &hs);
    gw_route_leave(route);
    if (rc != CUDA_SUCCESS)
        return rc;
    gw_req *q = gw_req_begin_quiet(op); /* GRAPH_ADD_MEMCPY_NODE in codegen/protocol.txt */
    gw_put_fields(q, gw_graph_add_memcpy_node_req, {.graph = (uint64_t)(uintptr_t)hGraph});
    gw_put_dependencies(q, dependencies, numDependencies);
    gw_put_fields(q, gw_graph_add_memcpy_node_req_after_deps, {.copy = p, .context = (uint64_t)(uintptr_t)ctx});
    rc = finish(q, phGraphNode);
    if (rc == CUDA_SUCCESS && hs.staging &&
        gw_graph_source_set((uint64_t)(uintptr_t)hGraph, 0, *phGraphNode, hs.staging, hs.src, hs.n) != CUDA_SUCCESS) {
        cuGraphDestroyNode(*phGraphNode); /* its staging stays on the server until the session ends */
        rc = CUDA_ERROR_OUT_OF_MEMORY;
    }
    return rc;
}

CUresult CUDAAPI cuGraphMemcpyNodeSetParams(CUgraphNode hNode, const CUDA_MEMCPY3D *nodeParams)
{
    unsigned op = GW_OP_cuGraphMemcpyNodeSetParams;
    gw_stat_call(op);
    CUDA_MEMCPY3D p;
    host_source hs = {0};
    uint64_t graph = 0; /* a host source needs its graph: known for a node that has one already */
    int known = gw_graph_source_owner(hNode, &graph);
    CUresult rc = checked(op, nodeParams, &p, 0, known ? &hs : NULL);
    if (rc != CUDA_SUCCESS)
        return rc;
    gw_req *q = gw_req_begin_quiet(op); /* MEMCPY_NODE_SET_PARAMS */
    gw_put_fields(q, gw_memcpy_node_set_params_req, {.node = (uint64_t)(uintptr_t)hNode, .copy = p});
    rc = finish(q, NULL);
    if (rc == CUDA_SUCCESS && known && gw_graph_source_set(graph, 0, hNode, hs.staging, hs.src, hs.n) != CUDA_SUCCESS)
        gw_log("%s: out of memory for a host source: it is not refreshed at launch", gw_op_name(op));
    return rc;
}

CUresult CUDAAPI cuGraphExecMemcpyNodeSetParams(CUgraphExec hGraphExec, CUgraphNode hNode,
                                                const CUDA_MEMCPY3D *copyParams, CUcontext ctx)
{
    unsigned op = GW_OP_cuGraphExecMemcpyNodeSetParams;
    gw_stat_call(op);
    CUDA_MEMCPY3D p;
    host_source hs = {0};
    CUresult rc = checked(op, copyParams, &p, 0, &hs);
    if (rc != CUDA_SUCCESS)
        return rc;
    gw_req *q = gw_req_begin_quiet(op); /* EXEC_MEMCPY_NODE_SET_PARAMS */
    gw_put_fields(q, gw_exec_memcpy_node_set_params_req,
                  {.exec = (uint64_t)(uintptr_t)hGraphExec, .node = (uint64_t)(uintptr_t)hNode, .copy = p,
                   .context = (uint64_t)(uintptr_t)ctx});
    rc = finish(q, NULL);
    if (rc == CUDA_SUCCESS &&
        gw_graph_source_set((uint64_t)(uintptr_t)hGraphExec, 1, hNode, hs.staging, hs.src, hs.n) != CUDA_SUCCESS)
        gw_log("%s: out of memory for a host source: it is not refreshed at launch", gw_op_name(op));
    return rc;
}
