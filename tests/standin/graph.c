/* TEST DOUBLE: gpuwire CPU stand-in driver. Graphs built by calls, only as far as their
 * bookkeeping: empty nodes, instantiation (an executable graph remembers its graph's node
 * count) and cuGraphExecUpdate, which accepts a graph with as many nodes and otherwise
 * reports CU_GRAPH_EXEC_UPDATE_ERROR_TOPOLOGY_CHANGED naming the newest node of the new
 * graph (when it has more). Nothing is ever run. */
#include "standin.h"

#include <stdlib.h>

typedef struct sd_gnode {
    sd_obj h;
    void *graph;
    unsigned long long seq;
} sd_gnode;

typedef struct sd_gexec {
    sd_obj h;
    size_t nodes;
} sd_gexec;

static void drop_node(void *obj, void *g)
{
    sd_gnode *n = obj;
    if (n->graph == g) {
        sd_obj_del(n);
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

SD_API CUresult cuGraphAddEmptyNode(CUgraphNode *pn, CUgraph g, const CUgraphNode *deps, size_t ndeps)
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
        *pn = (CUgraphNode)n;
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
    free(e);
    return CUDA_SUCCESS;
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
