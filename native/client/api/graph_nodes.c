/* Kernel nodes of graphs: adding one, reading and changing its parameters.
 * Arguments travel packed into the function's parameter buffer layout, as a
 * launch sends them (gw_pack_args); the worker rebuilds kernelParams. What
 * cuGraphKernelNodeGetParams returns points into memory kept here: the
 * driver's own copy stays valid until the node's parameters change or its
 * graph goes, and nothing here can tell when the application has stopped
 * reading an answer, so answers are kept for the life of the process (one
 * per node and distinct content). Wire formats: native/worker/graph_nodes.c. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/idmap.h"
#include "api.h"

/* The v1 entry points take CUDA_KERNEL_NODE_PARAMS_v1, which is the v2 struct
 * without its last two fields (kern, ctx); they travel with those as 0. */
#undef cuGraphAddKernelNode
#undef cuGraphKernelNodeGetParams
#undef cuGraphKernelNodeSetParams
#undef cuGraphExecKernelNodeSetParams

/* ---- parameters going to the worker ---- */

/* p's arguments packed for its function (or its kernel, when func is NULL). */
static CUresult pack(const CUDA_KERNEL_NODE_PARAMS *p, uint8_t *buf, uint32_t *nbytes)
{
    if (!p)
        return CUDA_ERROR_INVALID_VALUE;
    CUfunction f = p->func ? p->func : (CUfunction)p->kern;
    if (!f)
        return CUDA_ERROR_INVALID_VALUE;
    return gw_pack_args(f, p->kernelParams, p->extra, buf, nbytes);
}

/* KERNEL_NODE_PARAMS (codegen/protocol.txt). The driver reads kern and ctx
 * only when func is NULL: they travel only then. */
static void put_params(gw_req *q, const CUDA_KERNEL_NODE_PARAMS *p, int v2, const uint8_t *buf, uint32_t nbytes)
{
    int by_kernel = v2 && !p->func;
    gw_put_fields(q, gw_kernel_node_params_req,
                  {.function = (uint64_t)(uintptr_t)p->func,
                   .kernel = by_kernel ? (uint64_t)(uintptr_t)p->kern : 0,
                   .context = by_kernel ? (uint64_t)(uintptr_t)p->ctx : 0,
                   .dims = {p->gridDimX, p->gridDimY, p->gridDimZ, p->blockDimX, p->blockDimY, p->blockDimZ,
                            p->sharedMemBytes},
                   .param_bytes = nbytes});
    gw_put_raw(q, buf, nbytes);
}

void gw_put_dependencies(gw_req *q, const CUgraphNode *deps, size_t n)
{
    gw_put_fields(q, gw_dependencies_req, {.m = (uint32_t)n});
    for (size_t i = 0; i < n; i++)
        gw_put_fields(q, gw_dependencies_req_nodes_item, {.node = (uint64_t)(uintptr_t)deps[i]});
}

/* A v1 struct seen as a v2 one (kern and ctx NULL). */
static CUDA_KERNEL_NODE_PARAMS from_v1(const CUDA_KERNEL_NODE_PARAMS_v1 *p)
{
    CUDA_KERNEL_NODE_PARAMS v;
    memset(&v, 0, sizeof v);
    v.func = p->func;
    v.gridDimX = p->gridDimX;
    v.gridDimY = p->gridDimY;
    v.gridDimZ = p->gridDimZ;
    v.blockDimX = p->blockDimX;
    v.blockDimY = p->blockDimY;
    v.blockDimZ = p->blockDimZ;
    v.sharedMemBytes = p->sharedMemBytes;
    v.kernelParams = p->kernelParams;
    v.extra = p->extra;
    return v;
}

static CUresult add_node(unsigned op, CUgraphNode *out, CUgraph g, const CUgraphNode *deps, size_t ndeps,
                         const CUDA_KERNEL_NODE_PARAMS *p, int v2)
{
    gw_stat_call(op);
    if (!out || !p || (ndeps && !deps) || ndeps > GW_MAX_PAYLOAD / 16)
        return CUDA_ERROR_INVALID_VALUE;
    uint8_t buf[GW_MAX_PARAM_BYTES];
    uint32_t nbytes;
    CUresult rc = pack(p, buf, &nbytes);
    if (rc != CUDA_SUCCESS)
        return rc;
    gw_req *q = gw_req_begin_quiet(op); /* GRAPH_ADD_KERNEL_NODE */
    gw_put_fields(q, gw_graph_add_kernel_node_req, {.graph = (uint64_t)(uintptr_t)g});
    gw_put_dependencies(q, deps, ndeps);
    put_params(q, p, v2, buf, nbytes);
    gw_rep *r;
    rc = gw_req_call(q, &r);
    if (rc == CUDA_SUCCESS) {
        gw_graph_add_kernel_node_rep rep = {0};
        gw_get_fields(r, gw_graph_add_kernel_node_rep, &rep); /* short: the status below says so */
        rc = gw_rep_status(r, rc);
        if (rc == CUDA_SUCCESS)
            *out = (CUgraphNode)(uintptr_t)rep.node;
    }
    gw_rep_end(r);
    return rc;
}

/* cuGraphKernelNodeSetParams (exec NULL) and cuGraphExecKernelNodeSetParams:
 * not hot paths, so they wait, and a refusal is the call's own result. */
static CUresult set_params(unsigned op, CUgraphExec exec, CUgraphNode node, const CUDA_KERNEL_NODE_PARAMS *p, int v2)
{
    gw_stat_call(op);
    uint8_t buf[GW_MAX_PARAM_BYTES];
    uint32_t nbytes;
    CUresult rc = pack(p, buf, &nbytes);
    if (rc != CUDA_SUCCESS)
        return rc;
    gw_req *q = gw_req_begin_quiet(op);
    if (op == GW_OP_cuGraphExecKernelNodeSetParams || op == GW_OP_cuGraphExecKernelNodeSetParams_v2)
        gw_put_fields(q, gw_exec_kernel_node_set_params_req,
                      {.exec = (uint64_t)(uintptr_t)exec, .node = (uint64_t)(uintptr_t)node});
    else
        gw_put_fields(q, gw_kernel_node_set_params_req, {.node = (uint64_t)(uintptr_t)node});
    put_params(q, p, v2, buf, nbytes);
    gw_rep *r;
    rc = gw_req_call(q, &r);
    gw_rep_end(r);
    return rc;
}

/* ---- parameters coming back: kept per node ---- */

typedef struct kept {
    struct kept *older; /* earlier answers for the same node, still readable */
    uint32_t n, nbytes;
    uint32_t *offs;     /* n offsets */
    uint8_t *bytes;     /* the packed arguments */
    void **kp;          /* n pointers into bytes: what kernelParams points at */
} kept;

static gw_idmap kept_by_node; /* node id -> newest kept answer */
static pthread_mutex_t kept_lock = PTHREAD_MUTEX_INITIALIZER;

static int same(const kept *k, uint32_t n, const uint32_t *offs, const uint8_t *bytes, uint32_t nbytes)
{
    return k->n == n && k->nbytes == nbytes && !memcmp(k->offs, offs, n * sizeof *offs) &&
           !memcmp(k->bytes, bytes, nbytes);
}

/* The kernelParams array for these arguments of this node: the one returned
 * before if nothing changed, else a new one (the old one stays). NULL: no memory. */
static void **keep(uint64_t node, uint32_t n, const uint32_t *offs, const uint8_t *bytes, uint32_t nbytes)
{
    pthread_mutex_lock(&kept_lock);
    kept *k = gw_idmap_get(&kept_by_node, node);
    if (k && same(k, n, offs, bytes, nbytes)) {
        pthread_mutex_unlock(&kept_lock);
        return k->kp;
    }
    /* one block: the struct, the pointers, the offsets, then the bytes 16-aligned */
    size_t head = sizeof(kept) + n * sizeof(void *) + n * sizeof(uint32_t);
    head = (head + 15) & ~(size_t)15;
    kept *nk = NULL;
    if (!posix_memalign((void **)&nk, 16, head + (nbytes ? nbytes : 1))) {
        nk->older = k;
        nk->n = n;
        nk->nbytes = nbytes;
        nk->kp = (void **)(nk + 1);
        nk->offs = (uint32_t *)(nk->kp + n);
        nk->bytes = (uint8_t *)nk + head;
        memcpy(nk->offs, offs, n * sizeof *offs);
        memcpy(nk->bytes, bytes, nbytes);
        for (uint32_t i = 0; i < n; i++)
            nk->kp[i] = nk->bytes + offs[i];
        if (gw_idmap_put(&kept_by_node, node, nk)) {
            free(nk);
            nk = NULL;
        }
    }
    pthread_mutex_unlock(&kept_lock);
    return nk ? nk->kp : NULL;
}

/* KERNEL_NODE_GET_PARAMS (codegen/protocol.txt) */
static CUresult get_params(unsigned op, CUgraphNode node, CUDA_KERNEL_NODE_PARAMS *p)
{
    gw_stat_call(op);
    if (!p)
        return CUDA_ERROR_INVALID_VALUE;
    gw_req *q = gw_req_begin_quiet(op);
    gw_put_fields(q, gw_kernel_node_get_params_req, {.node = (uint64_t)(uintptr_t)node});
    gw_rep *r;
    CUresult rc = gw_req_call(q, &r);
    if (rc != CUDA_SUCCESS) {
        gw_rep_end(r);
        return rc;
    }
    CUDA_KERNEL_NODE_PARAMS v;
    memset(&v, 0, sizeof v);
    gw_kernel_node_get_params_rep rep = {0};
    gw_get_fields(r, gw_kernel_node_get_params_rep, &rep); /* short: the status below says so */
    v.func = (CUfunction)(uintptr_t)rep.function;
    v.kern = (CUkernel)(uintptr_t)rep.kernel;
    v.ctx = (CUcontext)(uintptr_t)rep.context;
    const uint32_t *dims = rep.dims;
    uint32_t n = rep.n;
    const uint8_t *pairs = n <= GW_KERNEL_NODE_GET_PARAMS_REP_LAYOUT_MAX
                               ? gw_get_view(r, (size_t)n * GW_KERNEL_NODE_GET_PARAMS_REP_LAYOUT_ITEM_SIZE)
                               : NULL;
    gw_kernel_node_get_params_rep_after_layout after = {0};
    gw_get_part(r, gw_kernel_node_get_params_rep_after_layout, &after);
    uint32_t nbytes = after.param_bytes;
    const uint8_t *bytes = nbytes <= GW_KERNEL_NODE_GET_PARAMS_REP_PARAMS_MAX ? gw_get_view(r, nbytes) : NULL;
    rc = gw_rep_status(r, rc);
    if (rc == CUDA_SUCCESS && (!pairs || !bytes))
        rc = CUDA_ERROR_UNKNOWN;
    uint32_t *offs = rc == CUDA_SUCCESS ? malloc(n ? n * sizeof *offs : 1) : NULL;
    if (rc == CUDA_SUCCESS && !offs) {
        gw_rep_end(r);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    for (uint32_t i = 0; rc == CUDA_SUCCESS && i < n; i++) {
        gw_kernel_node_get_params_rep_layout_item it;
        gw_kernel_node_get_params_rep_layout_item_get(pairs + (size_t)i * GW_KERNEL_NODE_GET_PARAMS_REP_LAYOUT_ITEM_SIZE,
                                                      GW_KERNEL_NODE_GET_PARAMS_REP_LAYOUT_ITEM_SIZE, &it);
        if ((uint64_t)it.offset + it.size > nbytes)
            rc = CUDA_ERROR_UNKNOWN;
        offs[i] = it.offset;
    }
    if (rc == CUDA_SUCCESS) {
        v.kernelParams = keep((uint64_t)(uintptr_t)node, n, offs, bytes, nbytes);
        if (!v.kernelParams)
            rc = CUDA_ERROR_OUT_OF_MEMORY;
    }
    gw_rep_end(r);
    free(offs);
    if (rc == CUDA_ERROR_UNKNOWN)
        gw_log("%s: malformed parameters in the server's reply", gw_op_name(op));
    if (rc != CUDA_SUCCESS)
        return rc;
    v.gridDimX = dims[0];
    v.gridDimY = dims[1];
    v.gridDimZ = dims[2];
    v.blockDimX = dims[3];
    v.blockDimY = dims[4];
    v.blockDimZ = dims[5];
    v.sharedMemBytes = dims[6];
    *p = v;
    return CUDA_SUCCESS;
}

/* ---- entry points ---- */

CUresult CUDAAPI cuGraphAddKernelNode_v2(CUgraphNode *phGraphNode, CUgraph hGraph, const CUgraphNode *dependencies,
                                         size_t numDependencies, const CUDA_KERNEL_NODE_PARAMS *nodeParams)
{
    return add_node(GW_OP_cuGraphAddKernelNode_v2, phGraphNode, hGraph, dependencies, numDependencies, nodeParams,
                    1);
}

CUresult CUDAAPI cuGraphKernelNodeGetParams_v2(CUgraphNode hNode, CUDA_KERNEL_NODE_PARAMS *nodeParams)
{
    return get_params(GW_OP_cuGraphKernelNodeGetParams_v2, hNode, nodeParams);
}

CUresult CUDAAPI cuGraphKernelNodeSetParams_v2(CUgraphNode hNode, const CUDA_KERNEL_NODE_PARAMS *nodeParams)
{
    return set_params(GW_OP_cuGraphKernelNodeSetParams_v2, NULL, hNode, nodeParams, 1);
}

CUresult CUDAAPI cuGraphExecKernelNodeSetParams_v2(CUgraphExec hGraphExec, CUgraphNode hNode,
                                                   const CUDA_KERNEL_NODE_PARAMS *nodeParams)
{
    return set_params(GW_OP_cuGraphExecKernelNodeSetParams_v2, hGraphExec, hNode, nodeParams, 1);
}

CUresult CUDAAPI cuGraphAddKernelNode(CUgraphNode *phGraphNode, CUgraph hGraph, const CUgraphNode *dependencies,
                                      size_t numDependencies, const CUDA_KERNEL_NODE_PARAMS_v1 *nodeParams)
{
    if (!nodeParams)
        return CUDA_ERROR_INVALID_VALUE;
    CUDA_KERNEL_NODE_PARAMS v = from_v1(nodeParams);
    return add_node(GW_OP_cuGraphAddKernelNode, phGraphNode, hGraph, dependencies, numDependencies, &v, 0);
}

CUresult CUDAAPI cuGraphKernelNodeGetParams(CUgraphNode hNode, CUDA_KERNEL_NODE_PARAMS_v1 *nodeParams)
{
    if (!nodeParams)
        return CUDA_ERROR_INVALID_VALUE;
    CUDA_KERNEL_NODE_PARAMS v;
    CUresult rc = get_params(GW_OP_cuGraphKernelNodeGetParams, hNode, &v);
    if (rc != CUDA_SUCCESS)
        return rc;
    nodeParams->func = v.func ? v.func : (CUfunction)v.kern; /* a kernel stands for a function, as in launches */
    nodeParams->gridDimX = v.gridDimX;
    nodeParams->gridDimY = v.gridDimY;
    nodeParams->gridDimZ = v.gridDimZ;
    nodeParams->blockDimX = v.blockDimX;
    nodeParams->blockDimY = v.blockDimY;
    nodeParams->blockDimZ = v.blockDimZ;
    nodeParams->sharedMemBytes = v.sharedMemBytes;
    nodeParams->kernelParams = v.kernelParams;
    nodeParams->extra = NULL;
    return CUDA_SUCCESS;
}

CUresult CUDAAPI cuGraphKernelNodeSetParams(CUgraphNode hNode, const CUDA_KERNEL_NODE_PARAMS_v1 *nodeParams)
{
    if (!nodeParams)
        return CUDA_ERROR_INVALID_VALUE;
    CUDA_KERNEL_NODE_PARAMS v = from_v1(nodeParams);
    return set_params(GW_OP_cuGraphKernelNodeSetParams, NULL, hNode, &v, 0);
}

CUresult CUDAAPI cuGraphExecKernelNodeSetParams(CUgraphExec hGraphExec, CUgraphNode hNode,
                                                const CUDA_KERNEL_NODE_PARAMS_v1 *nodeParams)
{
    if (!nodeParams)
        return CUDA_ERROR_INVALID_VALUE;
    CUDA_KERNEL_NODE_PARAMS v = from_v1(nodeParams);
    return set_params(GW_OP_cuGraphExecKernelNodeSetParams, hGraphExec, hNode, &v, 0);
}
