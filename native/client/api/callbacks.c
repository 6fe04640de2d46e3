/* Host functions: cuLaunchHostFunc, cuStreamAddCallback and the host nodes of
 * graphs (docs/host-functions.md). The function and its data stay here under
 * a callback id (state/host_calls.c); the request carries the id and the
 * worker's driver runs a trampoline in stream order that has this process
 * run the function on its callback thread and waits for it to return. So a
 * host function is posted like a launch (no round trip), and a graph with
 * host nodes (built, or captured from a stream) runs on the server.
 * Wire formats: HOST_FUNC and the host-node formats in codegen/protocol.txt. */
#include "../state/host_calls.h"
#include "api.h"

/* CUDA forbids CUDA calls inside a host function: the wire refuses the
 * callback thread's driver calls meanwhile; these refuse before taking an id. */
#define REFUSED_IN_CALLBACK() \
    do {                      \
        if (gw_in_host_callback()) \
            return CUDA_ERROR_NOT_PERMITTED; \
    } while (0)

/* The synchronous way, kept for one case: while mapped or managed memory
 * exists, the function may read pages the device wrote, and fetching one is
 * a request the worker starts only after every earlier one; a request
 * blocked behind the waiting stream (the stand-in runs stream work on the
 * issuing thread; a GPU's synchronous copy waits there too) would never let
 * it run. So the stream is synchronized here and the function runs on the
 * calling thread, after the round trip made the device's writes visible. */
static CUresult run_here(int ptsz, int kind, CUstream s, CUhostFn fn, CUstreamCallback cb, void *data)
{
    CUresult status = ptsz ? cuStreamSynchronize_ptsz(s) : cuStreamSynchronize(s);
    if (kind == GW_HOST_FN) {
        if (status != CUDA_SUCCESS)
            return status;
        fn(data);
        return CUDA_SUCCESS;
    }
    cb(s, status, data); /* the callback learns of an earlier failure, as on a GPU */
    return status == CUDA_ERROR_INVALID_HANDLE ? status : CUDA_SUCCESS;
}

static CUresult post(unsigned op, int kind, CUstream s, CUhostFn fn, CUstreamCallback cb, void *data, unsigned flags)
{
    gw_stat_call(op);
    REFUSED_IN_CALLBACK();
    if ((kind == GW_HOST_FN && !fn) || (kind == GW_HOST_STREAM_CALLBACK && (!cb || flags != 0)))
        return CUDA_ERROR_INVALID_VALUE;
    /* under capture the function is recorded, not run: posted whatever memory exists */
    if (gw_mapped_live() && !gw_captures_active())
        return run_here(op == GW_OP_cuLaunchHostFunc_ptsz || op == GW_OP_cuStreamAddCallback_ptsz, kind, s, fn, cb,
                        data);
    /* while a capture is under way the stream may be capturing: its graph runs the function again */
    uint64_t id = gw_host_callback_id(kind, fn, cb, data, s, !gw_captures_active());
    if (!id)
        return CUDA_ERROR_OUT_OF_MEMORY;
    gw_req *q = gw_req_begin_quiet(op); /* HOST_FUNC */
    gw_put_fields(q, gw_host_func_req, {.stream = (uint64_t)(uintptr_t)s, .callback = id, .flags = flags});
    gw_fence_unsafe(op, (uint64_t)(uintptr_t)s); /* a synchronize of s waits for the function (state/stream_fences.c) */
    CUresult rc = gw_req_post(q);
    if (rc != CUDA_SUCCESS)
        gw_host_callback_unused(id);
    return rc;
}

CUresult CUDAAPI cuLaunchHostFunc(CUstream s, CUhostFn fn, void *userData)
{ return post(GW_OP_cuLaunchHostFunc, GW_HOST_FN, s, fn, NULL, userData, 0); }
CUresult CUDAAPI cuLaunchHostFunc_ptsz(CUstream s, CUhostFn fn, void *userData)
{ return post(GW_OP_cuLaunchHostFunc_ptsz, GW_HOST_FN, s, fn, NULL, userData, 0); }
CUresult CUDAAPI cuStreamAddCallback(CUstream s, CUstreamCallback cb, void *userData, unsigned int flags)
{ return post(GW_OP_cuStreamAddCallback, GW_HOST_STREAM_CALLBACK, s, NULL, cb, userData, flags); }
CUresult CUDAAPI cuStreamAddCallback_ptsz(CUstream s, CUstreamCallback cb, void *userData, unsigned int flags)
{ return post(GW_OP_cuStreamAddCallback_ptsz, GW_HOST_STREAM_CALLBACK, s, NULL, cb, userData, flags); }

/* ---- host nodes: the node keeps its callback id for the graph's life ---- */

static uint64_t node_callback(const CUDA_HOST_NODE_PARAMS *p)
{
    return p && p->fn ? gw_host_callback_id(GW_HOST_FN, p->fn, NULL, p->userData, NULL, 0) : 0;
}

CUresult CUDAAPI cuGraphAddHostNode(CUgraphNode *phGraphNode, CUgraph hGraph, const CUgraphNode *dependencies,
                                    size_t numDependencies, const CUDA_HOST_NODE_PARAMS *nodeParams)
{
    gw_stat_call(GW_OP_cuGraphAddHostNode);
    REFUSED_IN_CALLBACK();
    if (!phGraphNode || !nodeParams || !nodeParams->fn || (numDependencies && !dependencies) ||
        numDependencies > GW_MAX_PAYLOAD / 16)
        return CUDA_ERROR_INVALID_VALUE;
    uint64_t id = node_callback(nodeParams);
    if (!id)
        return CUDA_ERROR_OUT_OF_MEMORY;
    gw_req *q = gw_req_begin_quiet(GW_OP_cuGraphAddHostNode); /* GRAPH_ADD_HOST_NODE */
    gw_put_fields(q, gw_graph_add_host_node_req, {.graph = (uint64_t)(uintptr_t)hGraph});
    gw_put_dependencies(q, dependencies, numDependencies);
    gw_put_fields(q, gw_graph_add_host_node_req_after_deps, {.callback = id});
    gw_rep *r;
    CUresult rc = gw_req_call(q, &r);
    if (rc == CUDA_SUCCESS) {
        gw_graph_add_host_node_rep rep = {0};
        gw_get_fields(r, gw_graph_add_host_node_rep, &rep); /* short: the status below says so */
        rc = gw_rep_status(r, rc);
        if (rc == CUDA_SUCCESS)
            *phGraphNode = (CUgraphNode)(uintptr_t)rep.node;
    }
    gw_rep_end(r);
    return rc;
}

/* What both setters begin with: the checks, and the new function's callback id in *id. */
static CUresult setter_begin(unsigned op, const CUDA_HOST_NODE_PARAMS *p, uint64_t *id)
{
    gw_stat_call(op);
    REFUSED_IN_CALLBACK();
    if (!p || !p->fn)
        return CUDA_ERROR_INVALID_VALUE;
    *id = node_callback(p);
    return *id ? CUDA_SUCCESS : CUDA_ERROR_OUT_OF_MEMORY;
}

static CUresult answered(gw_req *q)
{
    gw_rep *r;
    CUresult rc = gw_req_call(q, &r);
    gw_rep_end(r);
    return rc;
}

CUresult CUDAAPI cuGraphHostNodeSetParams(CUgraphNode hNode, const CUDA_HOST_NODE_PARAMS *nodeParams)
{
    uint64_t id;
    CUresult rc = setter_begin(GW_OP_cuGraphHostNodeSetParams, nodeParams, &id);
    if (rc != CUDA_SUCCESS)
        return rc;
    gw_req *q = gw_req_begin_quiet(GW_OP_cuGraphHostNodeSetParams); /* HOST_NODE_SET_PARAMS */
    gw_put_fields(q, gw_host_node_set_params_req, {.node = (uint64_t)(uintptr_t)hNode, .callback = id});
    return answered(q);
}

CUresult CUDAAPI cuGraphExecHostNodeSetParams(CUgraphExec hGraphExec, CUgraphNode hNode,
                                              const CUDA_HOST_NODE_PARAMS *nodeParams)
{
    uint64_t id;
    CUresult rc = setter_begin(GW_OP_cuGraphExecHostNodeSetParams, nodeParams, &id);
    if (rc != CUDA_SUCCESS)
        return rc;
    gw_req *q = gw_req_begin_quiet(GW_OP_cuGraphExecHostNodeSetParams); /* EXEC_HOST_NODE_SET_PARAMS */
    gw_put_fields(q, gw_exec_host_node_set_params_req,
                  {.exec = (uint64_t)(uintptr_t)hGraphExec, .node = (uint64_t)(uintptr_t)hNode, .callback = id});
    return answered(q);
}

/* The worker names the node's callback id (a captured host function's too); the function is this process's. */
CUresult CUDAAPI cuGraphHostNodeGetParams(CUgraphNode hNode, CUDA_HOST_NODE_PARAMS *nodeParams)
{
    gw_stat_call(GW_OP_cuGraphHostNodeGetParams);
    REFUSED_IN_CALLBACK();
    if (!nodeParams)
        return CUDA_ERROR_INVALID_VALUE;
    gw_req *q = gw_req_begin_quiet(GW_OP_cuGraphHostNodeGetParams); /* HOST_NODE_GET_PARAMS */
    gw_put_fields(q, gw_host_node_get_params_req, {.node = (uint64_t)(uintptr_t)hNode});
    gw_rep *r;
    CUresult rc = gw_req_call(q, &r);
    if (rc == CUDA_SUCCESS) {
        gw_host_node_get_params_rep rep = {0};
        gw_get_fields(r, gw_host_node_get_params_rep, &rep);
        rc = gw_rep_status(r, rc);
        CUhostFn fn;
        void *data;
        if (rc == CUDA_SUCCESS && gw_host_callback_of(rep.callback, &fn, &data) == 0) {
            nodeParams->fn = fn;
            nodeParams->userData = data;
        } else if (rc == CUDA_SUCCESS) {
            /* a node of gpuwire's own (a delivered copy's): no function of this process's */
            gw_log("cuGraphHostNodeGetParams: the node's function is gpuwire's own, not the program's");
            rc = CUDA_ERROR_NOT_SUPPORTED;
        }
    }
    gw_rep_end(r);
    return rc;
}
