/* The graph calls that carry graphs' host sources along (memcpy nodes that
 * read this process's memory at each launch: graph_copies.c adds them,
 * state/graph_sources.c keeps them): an executable graph, a clone or a
 * parent graph takes over its graph's list, a launch first sends each
 * source's bytes, and destroying a graph or an executable graph lets go of
 * its staging. Each wraps its generated forwarder (gwf_). A captured
 * host-to-device copy from host memory becomes such a node too. */
#include <string.h>

#include "api.h"

#undef cuGraphInstantiate
#undef cuGraphLaunch
#undef cuGraphExecDestroy
#undef cuGraphDestroy
#undef cuGraphClone
#undef cuGraphAddChildGraphNode
#undef cuGraphExecChildGraphNodeSetParams
#undef cuGraphMemcpyNodeGetParams

#define ID(h) ((uint64_t)(uintptr_t)(h))

CUresult CUDAAPI cuGraphInstantiateWithFlags(CUgraphExec *phGraphExec, CUgraph hGraph, unsigned long long flags)
{
    CUresult rc = gwf_cuGraphInstantiateWithFlags(phGraphExec, hGraph, flags);
    if (rc == CUDA_SUCCESS && gw_graph_sources_copy(ID(hGraph), 0, ID(*phGraphExec), 1, 1) != CUDA_SUCCESS) {
        gw_graph_sources_release(ID(*phGraphExec), 1);
        gwf_cuGraphExecDestroy(*phGraphExec);
        rc = CUDA_ERROR_OUT_OF_MEMORY;
    }
    return rc;
}

CUresult CUDAAPI cuGraphLaunch(CUgraphExec hGraphExec, CUstream hStream)
{
    CUresult rc = gw_graph_sources_fill(ID(hGraphExec), hStream, 0);
    return rc == CUDA_SUCCESS ? gwf_cuGraphLaunch(hGraphExec, hStream) : rc;
}

CUresult CUDAAPI cuGraphLaunch_ptsz(CUgraphExec hGraphExec, CUstream hStream)
{
    CUresult rc = gw_graph_sources_fill(ID(hGraphExec), hStream, 1);
    return rc == CUDA_SUCCESS ? gwf_cuGraphLaunch_ptsz(hGraphExec, hStream) : rc;
}

/* Destroyed first, then the staging freed: the worker's free waits for the GPU. */
CUresult CUDAAPI cuGraphExecDestroy(CUgraphExec hGraphExec)
{
    CUresult rc = gwf_cuGraphExecDestroy(hGraphExec);
    if (rc == CUDA_SUCCESS)
        gw_graph_sources_release(ID(hGraphExec), 1);
    return rc;
}

CUresult CUDAAPI cuGraphDestroy(CUgraph hGraph)
{
    CUresult rc = gwf_cuGraphDestroy(hGraph);
    if (rc == CUDA_SUCCESS)
        gw_graph_sources_release(ID(hGraph), 0);
    return rc;
}

/* The clone's nodes read the same staging (their ids differ: the list keeps no node). */
CUresult CUDAAPI cuGraphClone(CUgraph *phGraphClone, CUgraph originalGraph)
{
    CUresult rc = gwf_cuGraphClone(phGraphClone, originalGraph);
    if (rc == CUDA_SUCCESS && gw_graph_sources_copy(ID(originalGraph), 0, ID(*phGraphClone), 0, 0) != CUDA_SUCCESS) {
        gwf_cuGraphDestroy(*phGraphClone);
        gw_graph_sources_release(ID(*phGraphClone), 0);
        rc = CUDA_ERROR_OUT_OF_MEMORY;
    }
    return rc;
}

/* The node holds a clone of the child: its sources become the parent's too. */
CUresult CUDAAPI cuGraphAddChildGraphNode(CUgraphNode *phGraphNode, CUgraph hGraph, const CUgraphNode *dependencies,
                                          size_t numDependencies, CUgraph childGraph)
{
    CUresult rc = gwf_cuGraphAddChildGraphNode(phGraphNode, hGraph, dependencies, numDependencies, childGraph);
    if (rc == CUDA_SUCCESS && gw_graph_sources_copy(ID(childGraph), 0, ID(hGraph), 0, 0) != CUDA_SUCCESS) {
        cuGraphDestroyNode(*phGraphNode);
        rc = CUDA_ERROR_OUT_OF_MEMORY;
    }
    return rc;
}

/* A host source's node reads back as it was given (the worker's node reads
 * device staging): new parameters made from it are then refused, not sent
 * with the staging's address, which no launch would fill any more. */
CUresult CUDAAPI cuGraphMemcpyNodeGetParams(CUgraphNode hNode, CUDA_MEMCPY3D *nodeParams)
{
    CUresult rc = gwf_cuGraphMemcpyNodeGetParams(hNode, nodeParams);
    const void *src;
    uint64_t n;
    if (rc == CUDA_SUCCESS && nodeParams && gw_graph_source_of(hNode, &src, &n)) {
        nodeParams->srcMemoryType = CU_MEMORYTYPE_HOST;
        nodeParams->srcHost = src;
        nodeParams->srcDevice = 0;
        nodeParams->srcArray = NULL;
        nodeParams->srcXInBytes = nodeParams->srcY = nodeParams->srcZ = 0;
        nodeParams->srcPitch = (size_t)n;
        nodeParams->srcHeight = 1;
    }
    return rc;
}

/* A new child in an executable graph: its host sources would not be followed. */
CUresult CUDAAPI cuGraphExecChildGraphNodeSetParams(CUgraphExec hGraphExec, CUgraphNode hNode, CUgraph childGraph)
{
    if (gw_graph_sources_any(ID(childGraph), 0)) {
        gw_stat_call(GW_OP_cuGraphExecChildGraphNodeSetParams);
        gw_log("cuGraphExecChildGraphNodeSetParams: a child graph with memcpy nodes reading host memory is not "
               "supported by gpuwire (instantiate the parent graph again, or use cuGraphExecUpdate)");
        return CUDA_ERROR_NOT_SUPPORTED;
    }
    return gwf_cuGraphExecChildGraphNodeSetParams(hGraphExec, hNode, childGraph);
}

/* A copy on a stream being captured, made a memcpy node of the capture's
 * graph (graph_copies.c gives host sides their staging or delivery), after
 * the capture's current dependencies, and then the capture's only
 * dependency. 0: the stream is not capturing (the copy goes as before); 1:
 * taken, *rc says how. */
static int captured_copy_node(int ptsz, CUstream s, const CUDA_MEMCPY3D *p, const char *what, CUresult *rc)
{
    if (!gw_captures_active())
        return 0;
    if (ptsz && !s)
        s = CU_STREAM_PER_THREAD; /* what the per-thread variants mean by the default stream */
    CUstreamCaptureStatus st = CU_STREAM_CAPTURE_STATUS_NONE;
    cuuint64_t id = 0;
    CUgraph g = NULL;
    const CUgraphNode *deps = NULL;
    const CUgraphEdgeData *edges = NULL;
    size_t nd = 0;
    if (cuStreamGetCaptureInfo(s, &st, &id, &g, &deps, &edges, &nd) != CUDA_SUCCESS ||
        st == CU_STREAM_CAPTURE_STATUS_NONE)
        return 0; /* a bad stream: the copy reports it as before */
    if (st != CU_STREAM_CAPTURE_STATUS_ACTIVE) {
        *rc = CUDA_ERROR_STREAM_CAPTURE_INVALIDATED;
        return 1;
    }
    for (size_t i = 0; edges && i < nd; i++)
        if (edges[i].type != CU_GRAPH_DEPENDENCY_TYPE_DEFAULT || edges[i].from_port || edges[i].to_port) {
            gw_log("%s: a captured copy %s host memory after a dependency edge of its own kind is not supported by "
                   "gpuwire", p->srcMemoryType == CU_MEMORYTYPE_HOST ? "cuMemcpyHtoDAsync" : "cuMemcpyDtoHAsync",
                   what);
            *rc = CUDA_ERROR_NOT_SUPPORTED;
            return 1;
        }
    CUcontext ctx = NULL;
    cuCtxGetCurrent(&ctx);
    CUgraphNode node = NULL;
    CUresult r = cuGraphAddMemcpyNode(&node, g, deps, nd, p, ctx);
    if (r == CUDA_SUCCESS)
        r = cuStreamUpdateCaptureDependencies(s, &node, NULL, 1, CU_STREAM_SET_CAPTURE_DEPENDENCIES);
    *rc = r;
    return 1;
}

/* An asynchronous host-to-device copy (copies.c) from host memory the server
 * cannot read, on a stream being captured: natively the captured node reads
 * that memory at each launch, so it becomes a host source node of the
 * capture's graph. */
int gw_graph_source_captured(int ptsz, CUdeviceptr dst, const void *src, size_t n, CUstream s, CUresult *rc)
{
    CUDA_MEMCPY3D p;
    memset(&p, 0, sizeof p);
    p.srcMemoryType = CU_MEMORYTYPE_HOST;
    p.srcHost = src;
    p.dstMemoryType = CU_MEMORYTYPE_DEVICE;
    p.dstDevice = dst;
    p.WidthInBytes = n;
    p.Height = p.Depth = 1;
    return captured_copy_node(ptsz, s, &p, "from", rc);
}

/* An asynchronous device-to-host copy (copies.c) into host memory that is not
 * a delivery's (pageable: simpleCudaGraphs' result, graphMemoryNodes' output
 * array), on a stream being captured: natively the node writes that memory at
 * each launch, so it becomes a node whose bytes are delivered to it at every
 * launch (graph_copies.c). */
int gw_graph_dest_captured(int ptsz, void *dst, CUdeviceptr src, size_t n, CUstream s, CUresult *rc)
{
    CUDA_MEMCPY3D p;
    memset(&p, 0, sizeof p);
    p.srcMemoryType = CU_MEMORYTYPE_DEVICE;
    p.srcDevice = src;
    p.dstMemoryType = CU_MEMORYTYPE_HOST;
    p.dstHost = dst;
    p.WidthInBytes = n;
    p.Height = p.Depth = 1;
    return captured_copy_node(ptsz, s, &p, "into", rc);
}
