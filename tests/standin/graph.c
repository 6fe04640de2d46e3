/* TEST DOUBLE: gpuwire CPU stand-in driver. Graphs built by calls, only as far as their
 * bookkeeping: empty nodes, kernel nodes, instantiation (an executable graph remembers its
 * graph and that graph's node count) and cuGraphExecUpdate, which accepts a graph with as
 * many nodes and otherwise reports CU_GRAPH_EXEC_UPDATE_ERROR_TOPOLOGY_CHANGED naming the
 * newest node of the new graph (when it has more). A kernel node keeps its function, launch
 * dimensions and a copy of its arguments (taken through kernelParams, laid out as the
 * function's registry entry says; gpuwire's worker always passes kernelParams, so `extra` is
 * refused); reading its parameters back gives kernelParams pointing at that copy. As on the
 * driver, a CUkernel given as the function is refused, and a node made from a kernel (func
 * NULL) also names that kernel's function in the current context. Setting parameters on an
 * executable graph checks the node is of the exec's graph and keeps the exec's own copy.
 * Nothing is ever run. */
#include "standin.h"

#include <stdlib.h>
#include <string.h>

/* A kernel node's parameters: ptrs point into bytes (set again after every copy). */
typedef struct sd_kparams {
    CUfunction func;
    CUkernel kern;
    CUcontext ctx;
    unsigned int dims[7];           /* grid x y z, block x y z, shared memory bytes */
    const sd_kernel_desc *desc;     /* the layout of bytes */
    unsigned char bytes[SD_PARAM_BUF];
    void *ptrs[SD_MAX_PARAMS];
} sd_kparams;

typedef struct sd_gnode {
    sd_obj h;
    void *graph;
    unsigned long long seq;
    sd_kparams *kernel;             /* kernel nodes only */
} sd_gnode;

/* Parameters an executable graph was given for one of its kernel nodes. */
typedef struct sd_exec_kparams {
    struct sd_exec_kparams *next;
    const sd_gnode *node;
    sd_kparams k;
} sd_exec_kparams;

typedef struct sd_gexec {
    sd_obj h;
    void *graph;                    /* instantiated from */
    size_t nodes;
    sd_exec_kparams *kparams;
} sd_gexec;

static void drop_node(void *obj, void *g)
{
    sd_gnode *n = obj;
    if (n->graph == g) {
        sd_obj_del(n);
        free(n->kernel);
        free(n);
    }
}

void sd_graph_drop_nodes(void *g) { sd_obj_each(SD_GRAPH_NODE, drop_node, g); }

typedef struct census {
    void *graph;
    size_t count;
    sd_gnode *newest;
} census;

static void count_node(void *obj, void *arg)
{
    sd_gnode *n = obj;
    census *c = arg;
    if (n->graph != c->graph)
        return;
    c->count++;
    if (!c->newest || n->seq > c->newest->seq)
        c->newest = n;
}

static census count_nodes(void *g)
{
    census c = {g, 0, NULL};
    sd_obj_each(SD_GRAPH_NODE, count_node, &c);
    return c;
}

static void *new_obj(size_t size, int kind)
{
    sd_obj *o = calloc(1, size);
    if (!o)
        return NULL;
    o->kind = kind;
    if (sd_obj_add(o)) {
        free(o);
        return NULL;
    }
    return o;
}

SD_API CUresult cuGraphCreate(CUgraph *pg, unsigned int flags)
{
    if (!pg || flags)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur(&c);
    sd_obj *g = r == CUDA_SUCCESS ? new_obj(sizeof(sd_obj), SD_GRAPH) : NULL; /* as capture.c's graphs */
    if (r == CUDA_SUCCESS && !g)
        r = CUDA_ERROR_OUT_OF_MEMORY;
    if (g)
        *pg = (CUgraph)g;
    sd_unlock();
    return r;
}

/* Adds a node (a kernel node when k is not NULL: the node takes it over). */
static CUresult add_node(CUgraphNode *pn, CUgraph g, const CUgraphNode *deps, size_t ndeps, sd_kparams *k)
{
    if (!pn || (ndeps && !deps))
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    CUresult r = sd_obj_live(g, SD_GRAPH) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
    for (size_t i = 0; r == CUDA_SUCCESS && i < ndeps; i++)
        if (!sd_obj_live(deps[i], SD_GRAPH_NODE) || ((sd_gnode *)deps[i])->graph != (void *)g)
            r = CUDA_ERROR_INVALID_VALUE;
    sd_gnode *n = r == CUDA_SUCCESS ? new_obj(sizeof *n, SD_GRAPH_NODE) : NULL;
    if (r == CUDA_SUCCESS && !n)
        r = CUDA_ERROR_OUT_OF_MEMORY;
    if (n) {
        n->graph = g;
        n->seq = sd_next_id();
        n->kernel = k;
        *pn = (CUgraphNode)n;
    }
    sd_unlock();
    return r;
}

SD_API CUresult cuGraphAddEmptyNode(CUgraphNode *pn, CUgraph g, const CUgraphNode *deps, size_t ndeps)
{
    return add_node(pn, g, deps, ndeps, NULL);
}

static void point(sd_kparams *k)
{
    for (unsigned int i = 0; i < k->desc->nparams; i++)
        k->ptrs[i] = k->bytes + k->desc->params[i].offset;
}

/* Checks p and copies it into k, as the driver keeps it: a function (a CUkernel there is
 * refused, as the driver does), or else a kernel, whose function in the current context the
 * node then names too; the context the node runs in; non-zero dimensions; the arguments
 * through kernelParams. Lock held. */
static CUresult take_params(const CUDA_KERNEL_NODE_PARAMS *p, sd_kparams *k)
{
    if (!p)
        return CUDA_ERROR_INVALID_VALUE;
    sd_ctx *c;
    CUresult r = sd_cur(&c);
    if (r != CUDA_SUCCESS)
        return r;
    CUfunction f = p->func;
    if (f && !sd_obj_live(f, SD_FUNC))
        return CUDA_ERROR_INVALID_HANDLE;
    if (!f && (r = p->kern ? cuKernelGetFunction(&f, p->kern) : CUDA_ERROR_INVALID_VALUE) != CUDA_SUCCESS)
        return r;
    if (!p->func && p->ctx && !sd_obj_live(p->ctx, SD_CTX))
        return CUDA_ERROR_INVALID_CONTEXT;
    sd_func *fn = sd_func_check(f);
    const unsigned int dims[7] = {p->gridDimX, p->gridDimY, p->gridDimZ, p->blockDimX, p->blockDimY, p->blockDimZ,
                                  p->sharedMemBytes};
    for (int i = 0; i < 6; i++)
        if (!dims[i])
            return CUDA_ERROR_INVALID_VALUE;
    const sd_kernel_desc *d = fn->desc;
    if (p->extra || (d->nparams && !p->kernelParams) || sd_params_size(d) > SD_PARAM_BUF)
        return CUDA_ERROR_INVALID_VALUE;
    memset(k, 0, sizeof *k);
    for (unsigned int i = 0; i < d->nparams; i++) {
        if (!p->kernelParams[i])
            return CUDA_ERROR_INVALID_VALUE;
        memcpy(k->bytes + d->params[i].offset, p->kernelParams[i], d->params[i].size);
    }
    k->func = f;
    k->kern = p->func ? NULL : p->kern;
    k->ctx = !p->func && p->ctx ? p->ctx : (CUcontext)c;
    memcpy(k->dims, dims, sizeof dims);
    k->desc = d;
    point(k);
    return CUDA_SUCCESS;
}

SD_API CUresult cuGraphAddKernelNode_v2(CUgraphNode *pn, CUgraph g, const CUgraphNode *deps, size_t ndeps,
                                        const CUDA_KERNEL_NODE_PARAMS *p)
{
    sd_kparams *k = calloc(1, sizeof *k);
    if (!k)
        return CUDA_ERROR_OUT_OF_MEMORY;
    sd_lock();
    CUresult r = take_params(p, k);
    if (r == CUDA_SUCCESS)
        r = add_node(pn, g, deps, ndeps, k);
    sd_unlock();
    if (r != CUDA_SUCCESS)
        free(k);
    return r;
}

/* A live kernel node, or NULL. Lock held. */
static sd_gnode *kernel_node(CUgraphNode h)
{
    sd_gnode *n = sd_obj_live(h, SD_GRAPH_NODE) ? (sd_gnode *)h : NULL;
    return n && n->kernel ? n : NULL;
}

SD_API CUresult cuGraphKernelNodeGetParams_v2(CUgraphNode h, CUDA_KERNEL_NODE_PARAMS *p)
{
    if (!p)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_gnode *n = kernel_node(h);
    if (n) {
        sd_kparams *k = n->kernel;
        memset(p, 0, sizeof *p);
        p->func = k->func;
        p->kern = k->kern;
        p->ctx = k->ctx;
        p->gridDimX = k->dims[0];
        p->gridDimY = k->dims[1];
        p->gridDimZ = k->dims[2];
        p->blockDimX = k->dims[3];
        p->blockDimY = k->dims[4];
        p->blockDimZ = k->dims[5];
        p->sharedMemBytes = k->dims[6];
        p->kernelParams = k->ptrs;
        p->extra = NULL;
    }
    sd_unlock();
    return n ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

SD_API CUresult cuGraphKernelNodeSetParams_v2(CUgraphNode h, const CUDA_KERNEL_NODE_PARAMS *p)
{
    static sd_kparams k; /* guarded by the global lock; p may point into the node's own copy */
    sd_lock();
    sd_gnode *n = kernel_node(h);
    CUresult r = n ? take_params(p, &k) : CUDA_ERROR_INVALID_VALUE;
    if (r == CUDA_SUCCESS) {
        *n->kernel = k;
        point(n->kernel);
    }
    sd_unlock();
    return r;
}

SD_API CUresult cuGraphInstantiateWithFlags(CUgraphExec *pe, CUgraph g, unsigned long long flags)
{
    if (!pe || (flags & ~0xfull)) /* CUDA_GRAPH_INSTANTIATE_FLAG_* */
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur(&c);
    if (r == CUDA_SUCCESS && !sd_obj_live(g, SD_GRAPH))
        r = CUDA_ERROR_INVALID_VALUE;
    sd_gexec *e = r == CUDA_SUCCESS ? new_obj(sizeof *e, SD_GRAPH_EXEC) : NULL;
    if (r == CUDA_SUCCESS && !e)
        r = CUDA_ERROR_OUT_OF_MEMORY;
    if (e) {
        e->graph = g;
        e->nodes = count_nodes(g).count;
        *pe = (CUgraphExec)e;
    }
    sd_unlock();
    return r;
}

SD_API CUresult cuGraphExecDestroy(CUgraphExec e)
{
    sd_lock();
    int live = sd_obj_live(e, SD_GRAPH_EXEC);
    if (live)
        sd_obj_del(e);
    sd_unlock();
    if (!live)
        return CUDA_ERROR_INVALID_VALUE;
    sd_gexec *x = (sd_gexec *)e;
    while (x->kparams) {
        sd_exec_kparams *k = x->kparams;
        x->kparams = k->next;
        free(k);
    }
    free(e);
    return CUDA_SUCCESS;
}

SD_API CUresult cuGraphExecKernelNodeSetParams_v2(CUgraphExec e, CUgraphNode h, const CUDA_KERNEL_NODE_PARAMS *p)
{
    static sd_kparams k; /* guarded by the global lock */
    sd_lock();
    sd_gexec *x = sd_obj_live(e, SD_GRAPH_EXEC) ? (sd_gexec *)e : NULL;
    sd_gnode *n = kernel_node(h);
    CUresult r = x && n && n->graph == x->graph ? take_params(p, &k) : CUDA_ERROR_INVALID_VALUE;
    if (r == CUDA_SUCCESS) {
        sd_exec_kparams *ek = x->kparams;
        while (ek && ek->node != n)
            ek = ek->next;
        if (!ek && (ek = calloc(1, sizeof *ek)) != NULL) {
            ek->node = n;
            ek->next = x->kparams;
            x->kparams = ek;
        }
        if (ek) {
            ek->k = k;
            point(&ek->k);
        } else {
            r = CUDA_ERROR_OUT_OF_MEMORY;
        }
    }
    sd_unlock();
    return r;
}

SD_API CUresult cuGraphExecUpdate_v2(CUgraphExec e, CUgraph g, CUgraphExecUpdateResultInfo *info)
{
    if (!info)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    CUresult r = sd_obj_live(e, SD_GRAPH_EXEC) && sd_obj_live(g, SD_GRAPH) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
    if (r == CUDA_SUCCESS) {
        census c = count_nodes(g);
        sd_gexec *x = (sd_gexec *)e;
        info->errorNode = info->errorFromNode = NULL;
        if (c.count == x->nodes) {
            info->result = CU_GRAPH_EXEC_UPDATE_SUCCESS;
        } else {
            info->result = CU_GRAPH_EXEC_UPDATE_ERROR_TOPOLOGY_CHANGED;
            if (c.count > x->nodes)
                info->errorNode = (CUgraphNode)c.newest;
            r = CUDA_ERROR_GRAPH_EXEC_UPDATE_FAILURE;
        }
    }
    sd_unlock();
    return r;
}
