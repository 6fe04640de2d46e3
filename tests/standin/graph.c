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
 * Memset, memcpy (device memory on both sides: gpuwire never sends host sides), event
 * record/wait and child-graph nodes (the child cloned when added, as the driver does) are kept
 * too, and cuGraphLaunch runs every node at once, in the order the nodes were added (a node's
 * dependencies are always older), through the entry points a stream would use; an executable
 * graph runs its graph's nodes as they are at launch, with the parameters given to the exec.
 * A memory alloc node allocates when it is added and frees with its graph: its memory is
 * there before the node runs and after its free node (launches run both as no-ops); graphs
 * holding memory nodes cannot be cloned or made child graphs, as on the driver; the graph
 * memory figures count what alloc nodes hold. Conditional nodes (if, while, switch) run their
 * bodies by their handle's value, which only CU_GRAPH_COND_ASSIGN_DEFAULT sets here (no test
 * kernel sets a condition); a while loop gives up after SD_WHILE_MAX rounds. */
#include "standin.h"

#include <stdio.h>
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
    CUgraphNodeType type;
    sd_kparams *kernel;             /* kernel nodes only */
    CUDA_MEMCPY3D copy;             /* memcpy nodes */
    CUDA_MEMSET_NODE_PARAMS set;    /* memset nodes */
    CUevent event;                  /* event record and wait nodes */
    CUDA_HOST_NODE_PARAMS host;     /* host nodes */
    CUgraph child;                  /* child graph nodes: the node's own clone */
    CUdeviceptr mem;                /* memory alloc nodes (which own it) and free nodes */
    unsigned long long mem_id;      /* the allocation's id: freed only if it is still that one */
    CUDA_MEM_ALLOC_NODE_PARAMS alloc; /* alloc nodes: as given, accessDescs pointing at a copy */
    const void *origin;             /* in a clone: the node it was copied from */
    struct sd_cond *cond;           /* conditional nodes: the condition, its kind and bodies */
    CUgraphConditionalNodeType cond_type;
    unsigned int nbodies;
    CUgraph *bodies;
    unsigned edges_in, programmatic_in; /* edges added by cuGraphAddDependencies(_v2) */
    size_t deps_at_add;                 /* dependencies given when it was made */
} sd_gnode;

/* A condition handle: a value conditional nodes read (kernels set it on a GPU; nothing here does). */
typedef struct sd_cond {
    sd_obj h;
    void *graph;
    unsigned int value, deflt, flags;
} sd_cond;

/* Parameters an executable graph was given for one of its nodes (of the node's type). */
typedef struct sd_exec_kparams {
    struct sd_exec_kparams *next;
    const sd_gnode *node;
    sd_kparams k;
    CUDA_MEMCPY3D copy;
    CUDA_MEMSET_NODE_PARAMS set;
    CUevent event;
    CUDA_HOST_NODE_PARAMS host;
} sd_exec_kparams;

typedef struct sd_gexec {
    sd_obj h;
    void *graph;                    /* instantiated from */
    size_t nodes;
    sd_exec_kparams *kparams;
} sd_gexec;

/* Bytes held by memory alloc nodes (allocated when added), and the most held since reset. */
static unsigned long long graph_mem, graph_mem_high;

static void drop_node(void *obj, void *g)
{
    sd_gnode *n = obj;
    if (n->graph == g) {
        const sd_alloc *a = n->type == CU_GRAPH_NODE_TYPE_MEM_ALLOC ? sd_find(n->mem, 0) : NULL;
        if (a && a->id == n->mem_id && a->base == n->mem) {
            graph_mem -= a->size;
            cuMemFree_v2(n->mem);
        }
        sd_obj_del(n);
        free(n->bodies);
        free((void *)n->alloc.accessDescs);
        free(n->kernel);
        free(n);
    }
}

/* The live nodes of g in the order they were added (malloc'd; NULL when none or out of memory). Lock held. */
typedef struct gather_nodes {
    void *graph;
    sd_gnode **v;
    size_t n, cap;
    int oom;
} gather_nodes;

static void gather_one(void *obj, void *arg)
{
    sd_gnode *n = obj;
    gather_nodes *a = arg;
    if (n->graph != a->graph || a->oom)
        return;
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 16;
        sd_gnode **v = realloc(a->v, cap * sizeof *v);
        if (!v) {
            a->oom = 1;
            return;
        }
        a->v = v;
        a->cap = cap;
    }
    a->v[a->n++] = n;
}

static int by_seq(const void *x, const void *y)
{
    const sd_gnode *a = *(sd_gnode *const *)x, *b = *(sd_gnode *const *)y;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static CUresult nodes_of(void *g, sd_gnode ***v, size_t *n)
{
    gather_nodes a = {g, NULL, 0, 0, 0};
    sd_obj_each(SD_GRAPH_NODE, gather_one, &a);
    if (a.oom) {
        free(a.v);
        return CUDA_ERROR_OUT_OF_MEMORY;
    }
    if (a.n)
        qsort(a.v, a.n, sizeof *a.v, by_seq);
    *v = a.v;
    *n = a.n;
    return CUDA_SUCCESS;
}

static void drop_cond(void *obj, void *g)
{
    sd_cond *c = obj;
    if (c->graph == g) {
        sd_obj_del(c);
        free(c);
    }
}

void sd_graph_drop_nodes(void *g)
{
    /* child clones go with their nodes: destroyed after the walk, which must not lose other nodes */
    sd_gnode **v = NULL;
    size_t n = 0;
    nodes_of(g, &v, &n);
    size_t nk = 0;
    for (size_t i = 0; i < n; i++)
        nk += (v[i]->child != NULL) + v[i]->nbodies;
    CUgraph *kids = nk ? malloc(nk * sizeof *kids) : NULL; /* read before the nodes go */
    nk = 0;
    for (size_t i = 0; kids && i < n; i++) {
        if (v[i]->child)
            kids[nk++] = v[i]->child;
        for (unsigned int j = 0; j < v[i]->nbodies; j++)
            kids[nk++] = v[i]->bodies[j];
    }
    sd_obj_each(SD_GRAPH_NODE, drop_node, g);
    sd_obj_each(SD_COND, drop_cond, g); /* condition handles go with their graph */
    for (size_t i = 0; i < nk; i++)
        cuGraphDestroy(kids[i]);
    free(kids);
    free(v);
}

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
        n->deps_at_add = ndeps;
        n->kernel = k;
        n->type = k ? CU_GRAPH_NODE_TYPE_KERNEL : CU_GRAPH_NODE_TYPE_EMPTY;
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

/* ---- memset, memcpy, event and child-graph nodes ---- */

static CUresult check_memset(const CUDA_MEMSET_NODE_PARAMS *p)
{
    if (!p || (p->elementSize != 1 && p->elementSize != 2 && p->elementSize != 4) || !p->width || !p->height)
        return CUDA_ERROR_INVALID_VALUE;
    return CUDA_SUCCESS;
}

static CUresult check_copy(const CUDA_MEMCPY3D *p)
{
    if (!p)
        return CUDA_ERROR_INVALID_VALUE;
    /* device or host memory (the worker's own staging: gpuwire delivers from it) */
    if ((p->srcMemoryType != CU_MEMORYTYPE_DEVICE && p->srcMemoryType != CU_MEMORYTYPE_HOST) ||
        (p->dstMemoryType != CU_MEMORYTYPE_DEVICE && p->dstMemoryType != CU_MEMORYTYPE_HOST))
        return CUDA_ERROR_NOT_SUPPORTED;
    return CUDA_SUCCESS;
}

/* A live node of this type, or NULL. Lock held. */
static sd_gnode *typed_node(CUgraphNode h, CUgraphNodeType type)
{
    sd_gnode *n = sd_obj_live(h, SD_GRAPH_NODE) ? (sd_gnode *)h : NULL;
    return n && n->type == type ? n : NULL;
}

/* Adds a node of `type` and fills it from `fill` (lock held throughout). */
static CUresult add_typed(CUgraphNode *pn, CUgraph g, const CUgraphNode *deps, size_t ndeps, CUgraphNodeType type,
                          const CUDA_MEMCPY3D *copy, const CUDA_MEMSET_NODE_PARAMS *set, CUevent ev, CUgraph child)
{
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_cur(&c);
    if (r == CUDA_SUCCESS && (type == CU_GRAPH_NODE_TYPE_EVENT_RECORD || type == CU_GRAPH_NODE_TYPE_WAIT_EVENT) &&
        !sd_obj_live(ev, SD_EVENT))
        r = CUDA_ERROR_INVALID_VALUE;
    CUgraph clone = NULL;
    if (r == CUDA_SUCCESS && type == CU_GRAPH_NODE_TYPE_GRAPH)
        r = child && child != g ? cuGraphClone(&clone, child) : CUDA_ERROR_INVALID_VALUE;
    if (r == CUDA_SUCCESS)
        r = add_node(pn, g, deps, ndeps, NULL);
    if (r == CUDA_SUCCESS) {
        sd_gnode *n = (sd_gnode *)*pn;
        n->type = type;
        if (copy)
            n->copy = *copy;
        if (set)
            n->set = *set;
        n->event = ev;
        n->child = clone;
    } else if (clone) {
        cuGraphDestroy(clone);
    }
    sd_unlock();
    return r;
}

SD_API CUresult cuGraphAddMemsetNode(CUgraphNode *pn, CUgraph g, const CUgraphNode *deps, size_t ndeps,
                                     const CUDA_MEMSET_NODE_PARAMS *p, CUcontext ctx)
{
    (void)ctx;
    CUresult r = check_memset(p);
    return r ? r : add_typed(pn, g, deps, ndeps, CU_GRAPH_NODE_TYPE_MEMSET, NULL, p, NULL, NULL);
}

SD_API CUresult cuGraphAddMemcpyNode(CUgraphNode *pn, CUgraph g, const CUgraphNode *deps, size_t ndeps,
                                     const CUDA_MEMCPY3D *p, CUcontext ctx)
{
    (void)ctx;
    CUresult r = check_copy(p);
    return r ? r : add_typed(pn, g, deps, ndeps, CU_GRAPH_NODE_TYPE_MEMCPY, p, NULL, NULL, NULL);
}

/* A host node: its function runs where the launch reaches it (work runs at once here). */
SD_API CUresult cuGraphAddHostNode(CUgraphNode *pn, CUgraph g, const CUgraphNode *deps, size_t ndeps,
                                   const CUDA_HOST_NODE_PARAMS *p)
{
    if (!p || !p->fn)
        return CUDA_ERROR_INVALID_VALUE;
    CUresult r = add_typed(pn, g, deps, ndeps, CU_GRAPH_NODE_TYPE_HOST, NULL, NULL, NULL, NULL);
    if (r == CUDA_SUCCESS) {
        sd_lock();
        ((sd_gnode *)*pn)->host = *p;
        sd_unlock();
    }
    return r;
}

SD_API CUresult cuGraphHostNodeGetParams(CUgraphNode h, CUDA_HOST_NODE_PARAMS *p)
{
    sd_lock();
    sd_gnode *n = typed_node(h, CU_GRAPH_NODE_TYPE_HOST);
    if (n && p)
        *p = n->host;
    sd_unlock();
    return n && p ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

SD_API CUresult cuGraphHostNodeSetParams(CUgraphNode h, const CUDA_HOST_NODE_PARAMS *p)
{
    sd_lock();
    sd_gnode *n = typed_node(h, CU_GRAPH_NODE_TYPE_HOST);
    CUresult r = n && p && p->fn ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
    if (r == CUDA_SUCCESS)
        n->host = *p;
    sd_unlock();
    return r;
}

static sd_exec_kparams *exec_params(sd_gexec *x, const sd_gnode *n);
static CUresult exec_node(CUgraphExec e, CUgraphNode h, CUgraphNodeType type, sd_gexec **x, sd_gnode **n);

/* The exec's own function for a host node: later launches of that exec call it. */
SD_API CUresult cuGraphExecHostNodeSetParams(CUgraphExec e, CUgraphNode h, const CUDA_HOST_NODE_PARAMS *p)
{
    sd_lock();
    sd_gexec *x;
    sd_gnode *n;
    CUresult r = p && p->fn ? exec_node(e, h, CU_GRAPH_NODE_TYPE_HOST, &x, &n) : CUDA_ERROR_INVALID_VALUE;
    sd_exec_kparams *ek = r == CUDA_SUCCESS ? exec_params(x, n) : NULL;
    if (ek)
        ek->host = *p;
    else if (r == CUDA_SUCCESS)
        r = CUDA_ERROR_OUT_OF_MEMORY;
    sd_unlock();
    return r;
}

SD_API CUresult cuGraphAddEventRecordNode(CUgraphNode *pn, CUgraph g, const CUgraphNode *deps, size_t ndeps,
                                          CUevent ev)
{
    return add_typed(pn, g, deps, ndeps, CU_GRAPH_NODE_TYPE_EVENT_RECORD, NULL, NULL, ev, NULL);
}

SD_API CUresult cuGraphAddEventWaitNode(CUgraphNode *pn, CUgraph g, const CUgraphNode *deps, size_t ndeps,
                                        CUevent ev)
{
    return add_typed(pn, g, deps, ndeps, CU_GRAPH_NODE_TYPE_WAIT_EVENT, NULL, NULL, ev, NULL);
}

SD_API CUresult cuGraphAddChildGraphNode(CUgraphNode *pn, CUgraph g, const CUgraphNode *deps, size_t ndeps,
                                         CUgraph child)
{
    return add_typed(pn, g, deps, ndeps, CU_GRAPH_NODE_TYPE_GRAPH, NULL, NULL, NULL, child);
}

SD_API CUresult cuGraphMemsetNodeGetParams(CUgraphNode h, CUDA_MEMSET_NODE_PARAMS *p)
{
    sd_lock();
    sd_gnode *n = typed_node(h, CU_GRAPH_NODE_TYPE_MEMSET);
    if (n && p)
        *p = n->set;
    sd_unlock();
    return n && p ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

SD_API CUresult cuGraphMemsetNodeSetParams(CUgraphNode h, const CUDA_MEMSET_NODE_PARAMS *p)
{
    sd_lock();
    sd_gnode *n = typed_node(h, CU_GRAPH_NODE_TYPE_MEMSET);
    CUresult r = n ? check_memset(p) : CUDA_ERROR_INVALID_VALUE;
    if (r == CUDA_SUCCESS)
        n->set = *p;
    sd_unlock();
    return r;
}

SD_API CUresult cuGraphMemcpyNodeGetParams(CUgraphNode h, CUDA_MEMCPY3D *p)
{
    sd_lock();
    sd_gnode *n = typed_node(h, CU_GRAPH_NODE_TYPE_MEMCPY);
    if (n && p)
        *p = n->copy;
    sd_unlock();
    return n && p ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

SD_API CUresult cuGraphMemcpyNodeSetParams(CUgraphNode h, const CUDA_MEMCPY3D *p)
{
    sd_lock();
    sd_gnode *n = typed_node(h, CU_GRAPH_NODE_TYPE_MEMCPY);
    CUresult r = n ? check_copy(p) : CUDA_ERROR_INVALID_VALUE;
    if (r == CUDA_SUCCESS)
        n->copy = *p;
    sd_unlock();
    return r;
}

static CUresult node_event(CUgraphNode h, CUgraphNodeType type, CUevent *out)
{
    sd_lock();
    sd_gnode *n = typed_node(h, type);
    if (n && out)
        *out = n->event;
    sd_unlock();
    return n && out ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

SD_API CUresult cuGraphEventRecordNodeGetEvent(CUgraphNode h, CUevent *out)
{
    return node_event(h, CU_GRAPH_NODE_TYPE_EVENT_RECORD, out);
}

SD_API CUresult cuGraphEventWaitNodeGetEvent(CUgraphNode h, CUevent *out)
{
    return node_event(h, CU_GRAPH_NODE_TYPE_WAIT_EVENT, out);
}

static sd_exec_kparams *exec_params(sd_gexec *x, const sd_gnode *n);
static CUresult exec_node(CUgraphExec e, CUgraphNode h, CUgraphNodeType type, sd_gexec **x, sd_gnode **n);

/* An event node's event, on the graph (e NULL) or on an exec. */
static CUresult set_event(CUgraphExec e, CUgraphNode h, CUgraphNodeType type, CUevent ev)
{
    sd_lock();
    sd_gexec *x = NULL;
    sd_gnode *n = typed_node(h, type);
    CUresult r = n && sd_obj_live(ev, SD_EVENT) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
    if (r == CUDA_SUCCESS && e)
        r = exec_node(e, h, type, &x, &n);
    if (r == CUDA_SUCCESS && !x) {
        n->event = ev;
    } else if (r == CUDA_SUCCESS) {
        sd_exec_kparams *ek = exec_params(x, n);
        if (ek)
            ek->event = ev;
        else
            r = CUDA_ERROR_OUT_OF_MEMORY;
    }
    sd_unlock();
    return r;
}

SD_API CUresult cuGraphEventRecordNodeSetEvent(CUgraphNode h, CUevent ev)
{
    return set_event(NULL, h, CU_GRAPH_NODE_TYPE_EVENT_RECORD, ev);
}

SD_API CUresult cuGraphEventWaitNodeSetEvent(CUgraphNode h, CUevent ev)
{
    return set_event(NULL, h, CU_GRAPH_NODE_TYPE_WAIT_EVENT, ev);
}

SD_API CUresult cuGraphExecEventRecordNodeSetEvent(CUgraphExec e, CUgraphNode h, CUevent ev)
{
    return set_event(e, h, CU_GRAPH_NODE_TYPE_EVENT_RECORD, ev);
}

SD_API CUresult cuGraphExecEventWaitNodeSetEvent(CUgraphExec e, CUgraphNode h, CUevent ev)
{
    return set_event(e, h, CU_GRAPH_NODE_TYPE_WAIT_EVENT, ev);
}

SD_API CUresult cuGraphChildGraphNodeGetGraph(CUgraphNode h, CUgraph *out)
{
    sd_lock();
    sd_gnode *n = typed_node(h, CU_GRAPH_NODE_TYPE_GRAPH);
    if (n && out)
        *out = n->child;
    sd_unlock();
    return n && out ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

/* The exec's own parameters for node n, made on first use (NULL: out of memory). Lock held. */
static sd_exec_kparams *exec_params(sd_gexec *x, const sd_gnode *n)
{
    sd_exec_kparams *ek = x->kparams;
    while (ek && ek->node != n)
        ek = ek->next;
    if (!ek && (ek = calloc(1, sizeof *ek)) != NULL) {
        ek->node = n;
        ek->next = x->kparams;
        x->kparams = ek;
        ek->copy = n->copy;
        ek->set = n->set;
        ek->event = n->event;
        ek->host = n->host;
        if (n->kernel) {
            ek->k = *n->kernel;
            point(&ek->k);
        }
    }
    return ek;
}

/* A live exec and a node of its graph of this type, or CUDA_ERROR_INVALID_VALUE. Lock held. */
static CUresult exec_node(CUgraphExec e, CUgraphNode h, CUgraphNodeType type, sd_gexec **x, sd_gnode **n)
{
    *x = sd_obj_live(e, SD_GRAPH_EXEC) ? (sd_gexec *)e : NULL;
    *n = typed_node(h, type);
    return *x && *n && (*n)->graph == (*x)->graph ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

SD_API CUresult cuGraphExecMemsetNodeSetParams(CUgraphExec e, CUgraphNode h, const CUDA_MEMSET_NODE_PARAMS *p,
                                               CUcontext ctx)
{
    (void)ctx;
    sd_lock();
    sd_gexec *x;
    sd_gnode *n;
    CUresult r = exec_node(e, h, CU_GRAPH_NODE_TYPE_MEMSET, &x, &n);
    if (r == CUDA_SUCCESS)
        r = check_memset(p);
    sd_exec_kparams *ek = r == CUDA_SUCCESS ? exec_params(x, n) : NULL;
    if (ek)
        ek->set = *p;
    else if (r == CUDA_SUCCESS)
        r = CUDA_ERROR_OUT_OF_MEMORY;
    sd_unlock();
    return r;
}

SD_API CUresult cuGraphExecMemcpyNodeSetParams(CUgraphExec e, CUgraphNode h, const CUDA_MEMCPY3D *p, CUcontext ctx)
{
    (void)ctx;
    sd_lock();
    sd_gexec *x;
    sd_gnode *n;
    CUresult r = exec_node(e, h, CU_GRAPH_NODE_TYPE_MEMCPY, &x, &n);
    if (r == CUDA_SUCCESS)
        r = check_copy(p);
    sd_exec_kparams *ek = r == CUDA_SUCCESS ? exec_params(x, n) : NULL;
    if (ek)
        ek->copy = *p;
    else if (r == CUDA_SUCCESS)
        r = CUDA_ERROR_OUT_OF_MEMORY;
    sd_unlock();
    return r;
}

/* A graph's nodes in creation order, with the driver's contract: nodes NULL
 * asks the count; else up to *num written, the rest NULL, *num how many.
 * Roots: nodes made with no dependency and given no edge since (the stand-in
 * keeps counts of edges, not the edges). */
static CUresult list_nodes(CUgraph g, CUgraphNode *nodes, size_t *num, int roots)
{
    if (!num)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_gnode **v = NULL;
    size_t nv = 0;
    CUresult r = sd_obj_live(g, SD_GRAPH) ? nodes_of(g, &v, &nv) : CUDA_ERROR_INVALID_VALUE;
    size_t seen = 0;
    for (size_t i = 0; r == CUDA_SUCCESS && i < nv; i++)
        if (!roots || (!v[i]->deps_at_add && !v[i]->edges_in && !v[i]->programmatic_in))
            v[seen++] = v[i];
    if (r == CUDA_SUCCESS) {
        if (!nodes) {
            *num = seen;
        } else {
            size_t n = *num < seen ? *num : seen;
            for (size_t i = 0; i < *num; i++)
                nodes[i] = i < n ? (CUgraphNode)v[i] : NULL;
            *num = n;
        }
    }
    free(v);
    sd_unlock();
    return r;
}

SD_API CUresult cuGraphGetNodes(CUgraph g, CUgraphNode *nodes, size_t *num) { return list_nodes(g, nodes, num, 0); }
SD_API CUresult cuGraphGetRootNodes(CUgraph g, CUgraphNode *nodes, size_t *num) { return list_nodes(g, nodes, num, 1); }

SD_API CUresult cuGraphNodeGetType(CUgraphNode h, CUgraphNodeType *type)
{
    sd_lock();
    sd_gnode *n = sd_obj_live(h, SD_GRAPH_NODE) ? (sd_gnode *)h : NULL;
    if (n && type)
        *type = n->type;
    sd_unlock();
    return n && type ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

/* A copy of g's nodes, in order, into a new graph (dependencies are not kept: launches run nodes in order). */
SD_API CUresult cuGraphClone(CUgraph *out, CUgraph g)
{
    if (!out)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    CUresult r = sd_obj_live(g, SD_GRAPH) ? cuGraphCreate(out, 0) : CUDA_ERROR_INVALID_VALUE;
    sd_gnode **v = NULL;
    size_t nv = 0;
    if (r == CUDA_SUCCESS && (r = nodes_of(g, &v, &nv)) != CUDA_SUCCESS)
        cuGraphDestroy(*out);
    for (size_t i = 0; r == CUDA_SUCCESS && i < nv; i++) {
        const sd_gnode *n = v[i];
        CUgraphNode made;
        sd_kparams *k = NULL;
        if (n->kernel && (k = malloc(sizeof *k)) != NULL) {
            *k = *n->kernel;
            point(k);
        }
        if (n->kernel && !k)
            r = CUDA_ERROR_OUT_OF_MEMORY;
        else if (n->type == CU_GRAPH_NODE_TYPE_MEM_ALLOC || n->type == CU_GRAPH_NODE_TYPE_MEM_FREE ||
                 n->type == CU_GRAPH_NODE_TYPE_CONDITIONAL)
            r = CUDA_ERROR_NOT_SUPPORTED;
        else if (n->type == CU_GRAPH_NODE_TYPE_GRAPH)
            r = add_typed(&made, *out, NULL, 0, n->type, NULL, NULL, NULL, n->child);
        else if ((r = add_node(&made, *out, NULL, 0, k)) == CUDA_SUCCESS) {
            sd_gnode *m = (sd_gnode *)made;
            m->type = n->type;
            m->copy = n->copy;
            m->set = n->set;
            m->event = n->event;
            m->host = n->host;
        } else {
            free(k);
        }
        if (r == CUDA_SUCCESS)
            ((sd_gnode *)made)->origin = n;
        else
            cuGraphDestroy(*out);
    }
    free(v);
    sd_unlock();
    return r;
}

static CUresult run_memset(const CUDA_MEMSET_NODE_PARAMS *p)
{
    switch (p->elementSize) {
    case 1: return cuMemsetD2D8_v2(p->dst, p->pitch, (unsigned char)p->value, p->width, p->height);
    case 2: return cuMemsetD2D16_v2(p->dst, p->pitch, (unsigned short)p->value, p->width, p->height);
    default: return cuMemsetD2D32_v2(p->dst, p->pitch, p->value, p->width, p->height);
    }
}

static CUresult run_graph(CUgraph g, const sd_gexec *x, CUstream s, int depth);

#define SD_WHILE_MAX 1024 /* no kernel here sets a condition: a while loop stops after this many rounds */

static CUresult run_conditional(const sd_gnode *n, CUstream s, int depth)
{
    unsigned int v = n->cond->value;
    switch (n->cond_type) {
    case CU_GRAPH_COND_TYPE_IF:
        if (v || n->nbodies == 2)
            return run_graph(n->bodies[v ? 0 : 1], NULL, s, depth + 1);
        return CUDA_SUCCESS;
    case CU_GRAPH_COND_TYPE_WHILE:
        for (int i = 0; n->cond->value; i++) {
            if (i == SD_WHILE_MAX)
                return CUDA_ERROR_LAUNCH_TIMEOUT;
            CUresult r = run_graph(n->bodies[0], NULL, s, depth + 1);
            if (r != CUDA_SUCCESS)
                return r;
        }
        return CUDA_SUCCESS;
    default: /* switch */
        return v < n->nbodies ? run_graph(n->bodies[v], NULL, s, depth + 1) : CUDA_SUCCESS;
    }
}

/* Runs g's nodes in order on stream s; x (or NULL) gives the exec's own parameters. Lock held. */
static CUresult run_graph(CUgraph g, const sd_gexec *x, CUstream s, int depth)
{
    if (depth > 16 || !sd_obj_live(g, SD_GRAPH))
        return CUDA_ERROR_INVALID_VALUE;
    sd_gnode **v;
    size_t nv;
    CUresult r = nodes_of(g, &v, &nv);
    for (size_t i = 0; r == CUDA_SUCCESS && i < nv; i++) {
        const sd_gnode *n = v[i];
        const sd_exec_kparams *ek = x ? x->kparams : NULL;
        while (ek && ek->node != n)
            ek = ek->next;
        switch (n->type) {
        case CU_GRAPH_NODE_TYPE_KERNEL: {
            const sd_kparams *k = ek ? &ek->k : n->kernel;
            r = cuLaunchKernel(k->func, k->dims[0], k->dims[1], k->dims[2], k->dims[3], k->dims[4], k->dims[5],
                               k->dims[6], s, (void **)k->ptrs, NULL);
            break;
        }
        case CU_GRAPH_NODE_TYPE_MEMCPY: r = cuMemcpy3D_v2(ek ? &ek->copy : &n->copy); break;
        case CU_GRAPH_NODE_TYPE_MEMSET: r = run_memset(ek ? &ek->set : &n->set); break;
        case CU_GRAPH_NODE_TYPE_EVENT_RECORD: r = cuEventRecord(ek ? ek->event : n->event, s); break;
        case CU_GRAPH_NODE_TYPE_WAIT_EVENT: r = cuStreamWaitEvent(s, ek ? ek->event : n->event, 0); break;
        case CU_GRAPH_NODE_TYPE_GRAPH: r = run_graph(n->child, NULL, s, depth + 1); break;
        case CU_GRAPH_NODE_TYPE_CONDITIONAL: r = run_conditional(n, s, depth); break;
        case CU_GRAPH_NODE_TYPE_HOST: {
            const CUDA_HOST_NODE_PARAMS *h = ek ? &ek->host : &n->host;
            r = cuLaunchHostFunc(s, h->fn, h->userData);
            break;
        }
        default: break; /* empty */
        }
    }
    free(v);
    return r;
}

/* CU_GRAPH_COND_ASSIGN_DEFAULT: the value is set again when its graph is launched. */
static void assign_default(void *obj, void *g)
{
    sd_cond *c = obj;
    if (c->graph == g && (c->flags & CU_GRAPH_COND_ASSIGN_DEFAULT))
        c->value = c->deflt;
}

SD_API CUresult cuGraphLaunch(CUgraphExec e, CUstream s)
{
    sd_lock();
    sd_ctx *c;
    CUresult r = sd_stream_check(s, &c);
    if (r == CUDA_SUCCESS && !sd_obj_live(e, SD_GRAPH_EXEC))
        r = CUDA_ERROR_INVALID_VALUE;
    if (r == CUDA_SUCCESS) {
        sd_obj_each(SD_COND, assign_default, ((sd_gexec *)e)->graph);
        r = run_graph(((sd_gexec *)e)->graph, (sd_gexec *)e, s, 0);
    }
    sd_unlock();
    return r;
}

/* ---- memory alloc and free nodes ---- */

SD_API CUresult cuGraphAddMemAllocNode(CUgraphNode *pn, CUgraph g, const CUgraphNode *deps, size_t ndeps,
                                       CUDA_MEM_ALLOC_NODE_PARAMS *p)
{
    if (!p || !p->bytesize || p->poolProps.allocType != CU_MEM_ALLOCATION_TYPE_PINNED ||
        p->poolProps.handleTypes != CU_MEM_HANDLE_TYPE_NONE || p->poolProps.location.type != CU_MEM_LOCATION_TYPE_DEVICE ||
        p->poolProps.location.id != 0 || (p->accessDescCount && !p->accessDescs))
        return CUDA_ERROR_INVALID_VALUE;
    for (size_t i = 0; i < p->accessDescCount; i++)
        if (p->accessDescs[i].location.type != CU_MEM_LOCATION_TYPE_DEVICE || p->accessDescs[i].location.id != 0)
            return CUDA_ERROR_INVALID_VALUE;
    CUmemAccessDesc *descs = NULL;
    if (p->accessDescCount && !(descs = malloc(p->accessDescCount * sizeof *descs)))
        return CUDA_ERROR_OUT_OF_MEMORY;
    if (descs)
        memcpy(descs, p->accessDescs, p->accessDescCount * sizeof *descs);
    sd_lock();
    CUdeviceptr mem = 0;
    CUresult r = cuMemAlloc_v2(&mem, p->bytesize);
    if (r == CUDA_SUCCESS && (r = add_node(pn, g, deps, ndeps, NULL)) != CUDA_SUCCESS)
        cuMemFree_v2(mem);
    if (r == CUDA_SUCCESS) {
        sd_gnode *n = (sd_gnode *)*pn;
        n->type = CU_GRAPH_NODE_TYPE_MEM_ALLOC;
        n->mem = mem;
        n->mem_id = sd_find(mem, 0)->id;
        p->dptr = mem;
        n->alloc = *p;
        n->alloc.accessDescs = descs;
        descs = NULL;
        graph_mem += p->bytesize;
        if (graph_mem > graph_mem_high)
            graph_mem_high = graph_mem;
    }
    sd_unlock();
    free(descs);
    return r;
}

/* Is mem the address of an alloc node's allocation in graph g? Lock held. */
typedef struct find_alloc {
    void *graph;
    CUdeviceptr mem;
    int found;
} find_alloc;

static void match_alloc(void *obj, void *arg)
{
    sd_gnode *n = obj;
    find_alloc *f = arg;
    if (n->graph == f->graph && n->type == CU_GRAPH_NODE_TYPE_MEM_ALLOC && n->mem == f->mem)
        f->found = 1;
}

SD_API CUresult cuGraphAddMemFreeNode(CUgraphNode *pn, CUgraph g, const CUgraphNode *deps, size_t ndeps,
                                      CUdeviceptr dptr)
{
    sd_lock();
    find_alloc f = {g, dptr, 0};
    sd_obj_each(SD_GRAPH_NODE, match_alloc, &f);
    CUresult r = f.found ? add_node(pn, g, deps, ndeps, NULL) : CUDA_ERROR_INVALID_VALUE;
    if (r == CUDA_SUCCESS) {
        sd_gnode *n = (sd_gnode *)*pn;
        n->type = CU_GRAPH_NODE_TYPE_MEM_FREE;
        n->mem = dptr;
    }
    sd_unlock();
    return r;
}

SD_API CUresult cuGraphMemFreeNodeGetParams(CUgraphNode h, CUdeviceptr *out)
{
    sd_lock();
    sd_gnode *n = typed_node(h, CU_GRAPH_NODE_TYPE_MEM_FREE);
    if (n && out)
        *out = n->mem;
    sd_unlock();
    return n && out ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

typedef struct find_origin {
    void *graph;
    const void *origin;
    sd_gnode *found;
} find_origin;

static void match_origin(void *obj, void *arg)
{
    sd_gnode *n = obj;
    find_origin *f = arg;
    if (n->graph == f->graph && n->origin == f->origin)
        f->found = n;
}

SD_API CUresult cuGraphNodeFindInClone(CUgraphNode *out, CUgraphNode h, CUgraph clone)
{
    if (!out)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    find_origin f = {clone, h, NULL};
    if (sd_obj_live(clone, SD_GRAPH) && sd_obj_live(h, SD_GRAPH_NODE))
        sd_obj_each(SD_GRAPH_NODE, match_origin, &f);
    if (f.found)
        *out = (CUgraphNode)f.found;
    sd_unlock();
    return f.found ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

/* A DOT text naming each node by its order and type (the driver's own has far more). */
SD_API CUresult cuGraphDebugDotPrint(CUgraph g, const char *path, unsigned int flags)
{
    (void)flags;
    if (!path)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_gnode **v = NULL;
    size_t nv = 0;
    CUresult r = sd_obj_live(g, SD_GRAPH) ? nodes_of(g, &v, &nv) : CUDA_ERROR_INVALID_VALUE;
    FILE *f = r == CUDA_SUCCESS ? fopen(path, "w") : NULL;
    if (r == CUDA_SUCCESS && !f)
        r = CUDA_ERROR_OPERATING_SYSTEM;
    if (f) {
        fprintf(f, "digraph dot {\n");
        for (size_t i = 0; i < nv; i++)
            fprintf(f, "  node%zu [label=\"%zu type %d\"];\n", i, i, (int)v[i]->type);
        fprintf(f, "}\n");
        if (fclose(f))
            r = CUDA_ERROR_OPERATING_SYSTEM;
    }
    free(v);
    sd_unlock();
    return r;
}

/* Graph memory figures: used and reserved are the same here (nothing is pooled). */
SD_API CUresult cuDeviceGetGraphMemAttribute(CUdevice dev, CUgraphMem_attribute attr, void *value)
{
    CUresult r = sd_check_dev(dev);
    if (r != CUDA_SUCCESS)
        return r;
    if (!value)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    cuuint64_t v = 0;
    switch (attr) {
    case CU_GRAPH_MEM_ATTR_USED_MEM_CURRENT:
    case CU_GRAPH_MEM_ATTR_RESERVED_MEM_CURRENT: v = graph_mem; break;
    case CU_GRAPH_MEM_ATTR_USED_MEM_HIGH:
    case CU_GRAPH_MEM_ATTR_RESERVED_MEM_HIGH: v = graph_mem_high; break;
    default: r = CUDA_ERROR_INVALID_VALUE;
    }
    sd_unlock();
    if (r == CUDA_SUCCESS)
        memcpy(value, &v, sizeof v);
    return r;
}

/* Only the high watermarks can be set, and only to 0 (a reset), as on the driver. */
SD_API CUresult cuDeviceSetGraphMemAttribute(CUdevice dev, CUgraphMem_attribute attr, void *value)
{
    CUresult r = sd_check_dev(dev);
    if (r != CUDA_SUCCESS)
        return r;
    cuuint64_t v;
    if (!value)
        return CUDA_ERROR_INVALID_VALUE;
    memcpy(&v, value, sizeof v);
    if ((attr != CU_GRAPH_MEM_ATTR_USED_MEM_HIGH && attr != CU_GRAPH_MEM_ATTR_RESERVED_MEM_HIGH) || v)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    graph_mem_high = graph_mem;
    sd_unlock();
    return CUDA_SUCCESS;
}

SD_API CUresult cuDeviceGraphMemTrim(CUdevice dev) { return sd_check_dev(dev); }

/* ---- conditional handles and nodes ---- */

SD_API CUresult cuGraphConditionalHandleCreate(CUgraphConditionalHandle *out, CUgraph g, CUcontext ctx,
                                               unsigned int deflt, unsigned int flags)
{
    if (!out || (flags & ~(unsigned)CU_GRAPH_COND_ASSIGN_DEFAULT))
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    CUresult r = sd_obj_live(g, SD_GRAPH) && (!ctx || sd_obj_live(ctx, SD_CTX)) ? CUDA_SUCCESS
                                                                               : CUDA_ERROR_INVALID_VALUE;
    sd_cond *c = r == CUDA_SUCCESS ? new_obj(sizeof *c, SD_COND) : NULL;
    if (r == CUDA_SUCCESS && !c)
        r = CUDA_ERROR_OUT_OF_MEMORY;
    if (c) {
        c->graph = g;
        c->value = c->deflt = deflt;
        c->flags = flags;
        *out = (CUgraphConditionalHandle)(uintptr_t)c;
    }
    sd_unlock();
    return r;
}

/* Edges between nodes of one graph: checked as the driver checks them (live
 * nodes of g, known dependency types, ports 0 for a default edge); the
 * stand-in runs a graph's nodes in creation order, so an edge changes nothing
 * else. Each node counts the edges added to it (programmatic ones apart). */
static CUresult edges(CUgraph g, const CUgraphNode *from, const CUgraphNode *to, const CUgraphEdgeData *e, size_t n,
                      int add)
{
    if (n && (!from || !to))
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    CUresult r = sd_obj_live(g, SD_GRAPH) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
    for (size_t i = 0; r == CUDA_SUCCESS && i < n; i++) {
        sd_gnode *a = (sd_gnode *)from[i], *b = (sd_gnode *)to[i];
        if (!sd_obj_live(a, SD_GRAPH_NODE) || !sd_obj_live(b, SD_GRAPH_NODE) || a->graph != (void *)g ||
            b->graph != (void *)g || a == b)
            r = CUDA_ERROR_INVALID_VALUE;
        else if (e && (e[i].type > CU_GRAPH_DEPENDENCY_TYPE_PROGRAMMATIC ||
                       (e[i].type == CU_GRAPH_DEPENDENCY_TYPE_DEFAULT && (e[i].from_port || e[i].to_port))))
            r = CUDA_ERROR_INVALID_VALUE;
    }
    for (size_t i = 0; r == CUDA_SUCCESS && i < n; i++) {
        sd_gnode *b = (sd_gnode *)to[i];
        int prog = e && e[i].type == CU_GRAPH_DEPENDENCY_TYPE_PROGRAMMATIC;
        unsigned *count = prog ? &b->programmatic_in : &b->edges_in;
        if (add)
            (*count)++;
        else if (*count)
            (*count)--;
    }
    sd_unlock();
    return r;
}

#undef cuGraphAddDependencies /* cuda.h names the _v2 forms so; the library exports both */
#undef cuGraphRemoveDependencies
SD_API CUresult cuGraphAddDependencies(CUgraph g, const CUgraphNode *from, const CUgraphNode *to, size_t n)
{ return edges(g, from, to, NULL, n, 1); }
SD_API CUresult cuGraphAddDependencies_v2(CUgraph g, const CUgraphNode *from, const CUgraphNode *to,
                                          const CUgraphEdgeData *e, size_t n)
{ return edges(g, from, to, e, n, 1); }
SD_API CUresult cuGraphRemoveDependencies(CUgraph g, const CUgraphNode *from, const CUgraphNode *to, size_t n)
{ return edges(g, from, to, NULL, n, 0); }
SD_API CUresult cuGraphRemoveDependencies_v2(CUgraph g, const CUgraphNode *from, const CUgraphNode *to,
                                             const CUgraphEdgeData *e, size_t n)
{ return edges(g, from, to, e, n, 0); }

/* Only conditional nodes come this way from gpuwire's worker (every other type has its own call). */
SD_API CUresult cuGraphAddNode_v2(CUgraphNode *pn, CUgraph g, const CUgraphNode *deps, const CUgraphEdgeData *edges,
                                  size_t ndeps, CUgraphNodeParams *p)
{
    if (!p || edges)
        return CUDA_ERROR_INVALID_VALUE;
    if (p->type != CU_GRAPH_NODE_TYPE_CONDITIONAL)
        return CUDA_ERROR_NOT_SUPPORTED;
    CUDA_CONDITIONAL_NODE_PARAMS *cp = &p->conditional;
    unsigned int size = cp->size;
    int ok = (cp->type == CU_GRAPH_COND_TYPE_IF && (size == 1 || size == 2)) ||
             (cp->type == CU_GRAPH_COND_TYPE_WHILE && size == 1) || (cp->type == CU_GRAPH_COND_TYPE_SWITCH && size);
    if (!ok)
        return CUDA_ERROR_INVALID_VALUE;
    sd_lock();
    sd_cond *c = (sd_cond *)(uintptr_t)cp->handle;
    CUresult r = sd_obj_live(c, SD_COND) && c->graph == (void *)g ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
    CUgraph *bodies = r == CUDA_SUCCESS ? calloc(size, sizeof *bodies) : NULL;
    if (r == CUDA_SUCCESS && !bodies)
        r = CUDA_ERROR_OUT_OF_MEMORY;
    unsigned int made = 0;
    while (r == CUDA_SUCCESS && made < size && (r = cuGraphCreate(&bodies[made], 0)) == CUDA_SUCCESS)
        made++;
    if (r == CUDA_SUCCESS)
        r = add_node(pn, g, deps, ndeps, NULL);
    if (r == CUDA_SUCCESS) {
        sd_gnode *n = (sd_gnode *)*pn;
        n->type = CU_GRAPH_NODE_TYPE_CONDITIONAL;
        n->cond = c;
        n->cond_type = cp->type;
        n->nbodies = size;
        n->bodies = bodies;
        cp->phGraph_out = bodies;
    } else {
        while (made)
            cuGraphDestroy(bodies[--made]);
        free(bodies);
    }
    sd_unlock();
    return r;
}

SD_API CUresult cuGraphMemAllocNodeGetParams(CUgraphNode h, CUDA_MEM_ALLOC_NODE_PARAMS *out)
{
    sd_lock();
    sd_gnode *n = typed_node(h, CU_GRAPH_NODE_TYPE_MEM_ALLOC);
    if (n && out)
        *out = n->alloc;
    sd_unlock();
    return n && out ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}
