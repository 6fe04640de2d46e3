/* Memcpy nodes of graphs. A node copies again at every launch, on the server,
 * long after the call that made it: a side in this process's host memory
 * (pageable, pinned or registered alike) is out of the server's reach then, so
 * only device memory is accepted. A unified address is accepted when it lies
 * in a device allocation this process knows (graph memory included), and
 * travels as a device one.
 * Arrays are refused with the rest of the array API. Wire formats:
 * native/worker/graph_copies.c. */
#include <string.h>

#include "api.h"

#undef cuGraphAddMemcpyNode
#undef cuGraphMemcpyNodeSetParams
#undef cuGraphExecMemcpyNodeSetParams

/* One side of a copy made device-typed; 0, or -1 when it is not device memory. */
static int device_side(CUmemorytype *type, CUdeviceptr *dev, const void **host)
{
    if (*type == CU_MEMORYTYPE_DEVICE)
        return 0;
    if (*type == CU_MEMORYTYPE_UNIFIED && (gw_mem_is_device_range((uint64_t)*dev, 1) || gw_graph_mem_has(*dev))) {
        *type = CU_MEMORYTYPE_DEVICE;
        *host = NULL;
        return 0;
    }
    return -1;
}

/* p as it may travel, in *out; CUDA_ERROR_NOT_SUPPORTED (logged) for a side
 * the server cannot reach at launch time. */
static CUresult checked(unsigned op, const CUDA_MEMCPY3D *p, CUDA_MEMCPY3D *out)
{
    if (!p)
        return CUDA_ERROR_INVALID_VALUE;
    *out = *p;
    const void *dst_host = out->dstHost;
    if (device_side(&out->srcMemoryType, &out->srcDevice, &out->srcHost) ||
        device_side(&out->dstMemoryType, &out->dstDevice, &dst_host)) {
        gw_log("%s: a memcpy node with a side in host memory or an array is not supported by gpuwire "
               "(the node copies at each launch, on the server, which cannot reach this process's memory)",
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
    CUresult rc = checked(op, copyParams, &p);
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
    CUresult rc = checked(op, nodeParams, &p);
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
    CUresult rc = checked(op, copyParams, &p);
    if (rc != CUDA_SUCCESS)
        return rc;
    gw_req *q = gw_req_begin_quiet(op); /* EXEC_MEMCPY_NODE_SET_PARAMS */
    gw_put_fields(q, gw_exec_memcpy_node_set_params_req,
                  {.exec = (uint64_t)(uintptr_t)hGraphExec, .node = (uint64_t)(uintptr_t)hNode, .copy = p,
                   .context = (uint64_t)(uintptr_t)ctx});
    return finish(q, NULL);
}
