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
 *   call that could see the launch done (state/deliveries.c).
 * Anything else (pageable sources, arrays) is refused, logged. Wire formats:
 * codegen/protocol.txt. */
#include <string.h>

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

/* p as it may travel, in *out; CUDA_ERROR_NOT_SUPPORTED (logged) for a side
 * the server cannot reach at launch time. A new node (add) may deliver into
 * host memory. */
static CUresult checked(unsigned op, const CUDA_MEMCPY3D *p, CUDA_MEMCPY3D *out, int add)
{
    if (!p)
        return CUDA_ERROR_INVALID_VALUE;
    *out = *p;
    const void *dst_host = out->dstHost;
    int src_bad = device_side(&out->srcMemoryType, &out->srcDevice, &out->srcHost);
    int dst_bad = !src_bad && device_side(&out->dstMemoryType, &out->dstDevice, &dst_host);
    if (dst_bad && add && (out->dstMemoryType == CU_MEMORYTYPE_HOST || out->dstMemoryType == CU_MEMORYTYPE_UNIFIED) &&
        out->Height == 1 && out->Depth == 1 && out->WidthInBytes) {
        uint8_t *first = out->dstMemoryType == CU_MEMORYTYPE_HOST ? (uint8_t *)out->dstHost
                                                                   : (uint8_t *)(uintptr_t)out->dstDevice;
        first += out->dstXInBytes + out->dstY * out->dstPitch + out->dstZ * out->dstPitch * out->dstHeight;
        uint64_t id = first ? gw_delivery_for_node(first, out->WidthInBytes) : 0;
        if (id) {
            out->dstMemoryType = CU_MEMORYTYPE_HOST;
            dst_host = (void *)(uintptr_t)id; /* the worker's delivery id, never an address there */
            out->dstDevice = 0;
            out->dstXInBytes = out->dstY = out->dstZ = 0;
            dst_bad = 0;
        }
    }
    if (src_bad || dst_bad) {
        gw_log("%s: a memcpy node with a side in host memory the server cannot reach at each launch "
               "(pageable memory other than a new node's one-row destination, or an array) is not supported "
               "by gpuwire (page-locked memory is served as mapped memory)",
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
    CUresult rc = checked(op, copyParams, &p, 1);
    if (rc != CUDA_SUCCESS)
        return rc;
    gw_req *q = gw_req_begin_quiet(op); /* GRAPH_ADD_MEMCPY_NODE in codegen/protocol.txt */
    gw_put_fields(q, gw_graph_add_memcpy_node_req, {.graph = (uint64_t)(uintptr_t)hGraph});
    gw_put_dependencies(q, dependencies, numDependencies);
    gw_put_fields(q, gw_graph_add_memcpy_node_req_after_deps, {.copy = p, .context = (uint64_t)(uintptr_t)ctx});
    return finish(q, phGraphNode);
}

CUresult CUDAAPI cuGraphMemcpyNodeSetParams(CUgraphNode hNode, const CUDA_MEMCPY3D *nodeParams)
{
    unsigned op = GW_OP_cuGraphMemcpyNodeSetParams;
    gw_stat_call(op);
    CUDA_MEMCPY3D p;
    CUresult rc = checked(op, nodeParams, &p, 0);
    if (rc != CUDA_SUCCESS)
        return rc;
    gw_req *q = gw_req_begin_quiet(op); /* MEMCPY_NODE_SET_PARAMS */
    gw_put_fields(q, gw_memcpy_node_set_params_req, {.node = (uint64_t)(uintptr_t)hNode, .copy = p});
    return finish(q, NULL);
}

CUresult CUDAAPI cuGraphExecMemcpyNodeSetParams(CUgraphExec hGraphExec, CUgraphNode hNode,
                                                const CUDA_MEMCPY3D *copyParams, CUcontext ctx)
{
    unsigned op = GW_OP_cuGraphExecMemcpyNodeSetParams;
    gw_stat_call(op);
    CUDA_MEMCPY3D p;
    CUresult rc = checked(op, copyParams, &p, 0);
    if (rc != CUDA_SUCCESS)
        return rc;
    gw_req *q = gw_req_begin_quiet(op); /* EXEC_MEMCPY_NODE_SET_PARAMS */
    gw_put_fields(q, gw_exec_memcpy_node_set_params_req,
                  {.exec = (uint64_t)(uintptr_t)hGraphExec, .node = (uint64_t)(uintptr_t)hNode, .copy = p,
                   .context = (uint64_t)(uintptr_t)ctx});
    return finish(q, NULL);
}
