/* cuGraphAddNode(_v2), cuGraphNodeSetParams and cuGraphExecNodeSetParams:
 * the CUgraphNodeParams union is taken apart here and each node type goes
 * through its own entry point (and so its own wire format and checks): the
 * union holds client-named handles and pointers that only the per-type calls
 * know how to send; conditional nodes, which have no call of their own, go
 * through graph_conditional.c. Host, external semaphore and batch memory
 * operation nodes, edges other than the default one and
 * a child graph moved into its node are refused with CUDA_ERROR_NOT_SUPPORTED
 * and a log line. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"

#undef cuGraphAddNode
#undef cuGraphAddNode_v2
#undef cuGraphNodeSetParams
#undef cuGraphExecNodeSetParams

/* The casts below rely on these layouts being the same. */
_Static_assert(sizeof(CUDA_KERNEL_NODE_PARAMS_v3) == sizeof(CUDA_KERNEL_NODE_PARAMS) &&
                   offsetof(CUDA_KERNEL_NODE_PARAMS_v3, ctx) == offsetof(CUDA_KERNEL_NODE_PARAMS, ctx),
               "kernel node parameters v3 and v2 differ");
_Static_assert(sizeof(CUDA_MEM_ALLOC_NODE_PARAMS_v2) == sizeof(CUDA_MEM_ALLOC_NODE_PARAMS) &&
                   offsetof(CUDA_MEM_ALLOC_NODE_PARAMS_v2, dptr) == offsetof(CUDA_MEM_ALLOC_NODE_PARAMS, dptr),
               "memory alloc node parameters v2 and v1 differ");

static CUresult refuse(const char *call, const char *what)
{
    gw_log("%s: %s is not supported by gpuwire", call, what);
    return CUDA_ERROR_NOT_SUPPORTED;
}

static const char *type_name(CUgraphNodeType t)
{
    switch (t) {
    case CU_GRAPH_NODE_TYPE_HOST: return "a host node";
    case CU_GRAPH_NODE_TYPE_EXT_SEMAS_SIGNAL: return "an external semaphore signal node";
    case CU_GRAPH_NODE_TYPE_EXT_SEMAS_WAIT: return "an external semaphore wait node";
    case CU_GRAPH_NODE_TYPE_BATCH_MEM_OP: return "a batch memory operation node";
    default: return "this node type";
    }
}

static CUDA_MEMSET_NODE_PARAMS memset_v1(const CUDA_MEMSET_NODE_PARAMS_v2 *p)
{
    CUDA_MEMSET_NODE_PARAMS v = {p->dst, p->pitch, p->value, p->elementSize, p->width, p->height};
    return v;
}

/* Only the default edge (all zero) can be expressed through the per-type calls. */
static int default_edges(const CUgraphEdgeData *e, size_t n)
{
    static const CUgraphEdgeData zero;
    for (size_t i = 0; e && i < n; i++)
        if (memcmp(&e[i], &zero, sizeof zero))
            return 0;
    return 1;
}

static CUresult add_typed(const char *call, CUgraphNode *out, CUgraph g, const CUgraphNode *deps, size_t n,
                          CUgraphNodeParams *p);

/* A node with edges of their own kind (ports, programmatic dependencies: XLA
 * adds kernel nodes so): made without dependencies through the per-type
 * call, then joined to them with the edges as given. */
static CUresult add(const char *call, CUgraphNode *out, CUgraph g, const CUgraphNode *deps, const CUgraphEdgeData *edges,
                    size_t n, CUgraphNodeParams *p)
{
    if (!p || !out || (n && !deps))
        return CUDA_ERROR_INVALID_VALUE;
    if (default_edges(edges, n))
        return add_typed(call, out, g, deps, n, p);
    CUgraphNode *to = malloc(n * sizeof *to), node;
    if (!to)
        return CUDA_ERROR_OUT_OF_MEMORY;
    CUresult rc = add_typed(call, &node, g, NULL, 0, p);
    if (rc == CUDA_SUCCESS) {
        for (size_t i = 0; i < n; i++)
            to[i] = node;
        rc = cuGraphAddDependencies_v2(g, deps, to, edges, n);
        if (rc == CUDA_SUCCESS)
            *out = node;
        else
            cuGraphDestroyNode(node);
    }
    free(to);
    return rc;
}

static CUresult add_typed(const char *call, CUgraphNode *out, CUgraph g, const CUgraphNode *deps, size_t n,
                          CUgraphNodeParams *p)
{
    switch (p->type) {
    case CU_GRAPH_NODE_TYPE_KERNEL:
        /* v3 is v2 field for field */
        return cuGraphAddKernelNode_v2(out, g, deps, n, (const CUDA_KERNEL_NODE_PARAMS *)&p->kernel);
    case CU_GRAPH_NODE_TYPE_MEMCPY:
        if (p->memcpy.flags || p->memcpy.reserved)
            return CUDA_ERROR_INVALID_VALUE;
        return cuGraphAddMemcpyNode(out, g, deps, n, &p->memcpy.copyParams, p->memcpy.copyCtx);
    case CU_GRAPH_NODE_TYPE_MEMSET: {
        CUDA_MEMSET_NODE_PARAMS v = memset_v1(&p->memset);
        return cuGraphAddMemsetNode(out, g, deps, n, &v, p->memset.ctx);
    }
    case CU_GRAPH_NODE_TYPE_GRAPH:
        if (p->graph.ownership != CU_GRAPH_CHILD_GRAPH_OWNERSHIP_CLONE)
            return refuse(call, "a child graph moved into its node");
        return cuGraphAddChildGraphNode(out, g, deps, n, p->graph.graph);
    case CU_GRAPH_NODE_TYPE_EMPTY:
        return cuGraphAddEmptyNode(out, g, deps, n);
    case CU_GRAPH_NODE_TYPE_HOST: {
        CUDA_HOST_NODE_PARAMS v = {p->host.fn, p->host.userData};
        return cuGraphAddHostNode(out, g, deps, n, &v);
    }
    case CU_GRAPH_NODE_TYPE_WAIT_EVENT:
        return cuGraphAddEventWaitNode(out, g, deps, n, p->eventWait.event);
    case CU_GRAPH_NODE_TYPE_EVENT_RECORD:
        return cuGraphAddEventRecordNode(out, g, deps, n, p->eventRecord.event);
    case CU_GRAPH_NODE_TYPE_MEM_ALLOC:
        /* v2 is v1 field for field; the address comes back in p->alloc.dptr */
        return cuGraphAddMemAllocNode(out, g, deps, n, (CUDA_MEM_ALLOC_NODE_PARAMS *)&p->alloc);
    case CU_GRAPH_NODE_TYPE_MEM_FREE:
        return cuGraphAddMemFreeNode(out, g, deps, n, p->free.dptr);
    case CU_GRAPH_NODE_TYPE_CONDITIONAL:
        return gw_graph_add_conditional(out, g, deps, n, &p->conditional);
    default:
        return refuse(call, type_name(p->type));
    }
}

CUresult CUDAAPI cuGraphAddNode(CUgraphNode *phGraphNode, CUgraph hGraph, const CUgraphNode *dependencies,
                                size_t numDependencies, CUgraphNodeParams *nodeParams)
{
    return add("cuGraphAddNode", phGraphNode, hGraph, dependencies, NULL, numDependencies, nodeParams);
}

CUresult CUDAAPI cuGraphAddNode_v2(CUgraphNode *phGraphNode, CUgraph hGraph, const CUgraphNode *dependencies,
                                   const CUgraphEdgeData *dependencyData, size_t numDependencies,
                                   CUgraphNodeParams *nodeParams)
{
    return add("cuGraphAddNode_v2", phGraphNode, hGraph, dependencies, dependencyData, numDependencies, nodeParams);
}

/* The node's own context cannot change through the per-type setters: ctx is not sent. */
CUresult CUDAAPI cuGraphNodeSetParams(CUgraphNode hNode, CUgraphNodeParams *p)
{
    const char *call = "cuGraphNodeSetParams";
    if (!p)
        return CUDA_ERROR_INVALID_VALUE;
    switch (p->type) {
    case CU_GRAPH_NODE_TYPE_KERNEL:
        return cuGraphKernelNodeSetParams_v2(hNode, (const CUDA_KERNEL_NODE_PARAMS *)&p->kernel);
    case CU_GRAPH_NODE_TYPE_MEMCPY:
        if (p->memcpy.flags || p->memcpy.reserved)
            return CUDA_ERROR_INVALID_VALUE;
        return cuGraphMemcpyNodeSetParams(hNode, &p->memcpy.copyParams);
    case CU_GRAPH_NODE_TYPE_MEMSET: {
        CUDA_MEMSET_NODE_PARAMS v = memset_v1(&p->memset);
        return cuGraphMemsetNodeSetParams(hNode, &v);
    }
    case CU_GRAPH_NODE_TYPE_WAIT_EVENT:
        return cuGraphEventWaitNodeSetEvent(hNode, p->eventWait.event);
    case CU_GRAPH_NODE_TYPE_EVENT_RECORD:
        return cuGraphEventRecordNodeSetEvent(hNode, p->eventRecord.event);
    default:
        return refuse(call, "changing this node type's parameters");
    }
}

CUresult CUDAAPI cuGraphExecNodeSetParams(CUgraphExec hGraphExec, CUgraphNode hNode, CUgraphNodeParams *p)
{
    const char *call = "cuGraphExecNodeSetParams";
    if (!p)
        return CUDA_ERROR_INVALID_VALUE;
    switch (p->type) {
    case CU_GRAPH_NODE_TYPE_KERNEL:
        return cuGraphExecKernelNodeSetParams_v2(hGraphExec, hNode, (const CUDA_KERNEL_NODE_PARAMS *)&p->kernel);
    case CU_GRAPH_NODE_TYPE_MEMCPY:
        if (p->memcpy.flags || p->memcpy.reserved)
            return CUDA_ERROR_INVALID_VALUE;
        return cuGraphExecMemcpyNodeSetParams(hGraphExec, hNode, &p->memcpy.copyParams, p->memcpy.copyCtx);
    case CU_GRAPH_NODE_TYPE_MEMSET: {
        CUDA_MEMSET_NODE_PARAMS v = memset_v1(&p->memset);
        return cuGraphExecMemsetNodeSetParams(hGraphExec, hNode, &v, p->memset.ctx);
    }
    case CU_GRAPH_NODE_TYPE_GRAPH:
        return cuGraphExecChildGraphNodeSetParams(hGraphExec, hNode, p->graph.graph);
    case CU_GRAPH_NODE_TYPE_WAIT_EVENT:
        return cuGraphExecEventWaitNodeSetEvent(hGraphExec, hNode, p->eventWait.event);
    case CU_GRAPH_NODE_TYPE_EVENT_RECORD:
        return cuGraphExecEventRecordNodeSetEvent(hGraphExec, hNode, p->eventRecord.event);
    default:
        return refuse(call, "changing this node type's parameters");
    }
}
